//! Reading a checkpoint's weights: safetensors, or the legacy `pytorch_model.bin` (a zip holding
//! a pickle that references tensor storages).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::pickle::{self, Value};
use crate::{Error, Result};

/// A float32 tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

pub type Weights = BTreeMap<String, Tensor>;

fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let value = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((m << shift) & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(value)
}

fn decode(bytes: &[u8], dtype: &str, name: &str) -> Result<Vec<f32>> {
    let chunks = |size: usize| bytes.chunks_exact(size);
    Ok(match dtype {
        "F32" | "float" => chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        "F16" | "half" => chunks(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        "BF16" | "bfloat16" => {
            chunks(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect()
        }
        "F64" | "double" => chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
        other => {
            return Err(Error::Checkpoint(format!(
                "tensor {name} has dtype {other}; only float tensors can be converted"
            )));
        }
    })
}

/// Reads `model.safetensors`. Integer tensors (buffers such as `position_ids`) are skipped.
pub fn read_safetensors(path: &Path) -> Result<Weights> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "reading",
        path: path.display().to_string(),
        source,
    })?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|err| Error::Checkpoint(format!("{} is not a safetensors file: {err}", path.display())))?;
    let mut weights = Weights::new();
    for (name, view) in tensors.tensors() {
        let dtype = format!("{:?}", view.dtype());
        if dtype.starts_with('I') || dtype.starts_with('U') || dtype == "BOOL" {
            tracing::debug!(name, dtype, "skipping a non-float tensor");
            continue;
        }
        let data = decode(view.data(), &dtype, &name)?;
        weights.insert(name.clone(), Tensor { shape: view.shape().to_vec(), data });
    }
    Ok(weights)
}

fn storage_dtype(global: &Value) -> Option<&'static str> {
    let Value::Global(_, name) = global else { return None };
    Some(match name.as_str() {
        "FloatStorage" => "float",
        "HalfStorage" => "half",
        "BFloat16Storage" => "bfloat16",
        "DoubleStorage" => "double",
        "LongStorage" => "long",
        "IntStorage" => "int",
        _ => "other",
    })
}

struct TensorRef {
    key: String,
    dtype: &'static str,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn ints(value: &Value) -> Option<Vec<usize>> {
    match value {
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(|v| if let Value::Int(i) = v { usize::try_from(*i).ok() } else { None }).collect()
        }
        _ => None,
    }
}

fn tensor_ref(value: &Value) -> Option<TensorRef> {
    let Value::Call(callable, args) = value else { return None };
    let Value::Global(_, function) = callable.as_ref() else { return None };
    let Value::Tuple(args) = args.as_ref() else { return None };
    match function.as_str() {
        "_rebuild_parameter" | "_rebuild_parameter_with_state" => tensor_ref(args.first()?),
        "_rebuild_tensor_v2" | "_rebuild_tensor" => {
            let Value::PersId(id) = args.first()? else { return None };
            let Value::Tuple(id) = id.as_ref() else { return None };
            let key = match id.get(2)? {
                Value::Str(key) => key.clone(),
                Value::Int(key) => key.to_string(),
                _ => return None,
            };
            let Value::Int(offset) = args.get(1)? else { return None };
            Some(TensorRef {
                key,
                dtype: storage_dtype(id.get(1)?)?,
                offset: usize::try_from(*offset).ok()?,
                shape: ints(args.get(2)?)?,
                stride: ints(args.get(3)?)?,
            })
        }
        _ => None,
    }
}

/// The largest `data.pkl` read: a state dict's pickle is kilobytes.
const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// The largest tensor storage read (the embeddings of a large model are a few hundred MB).
const MAX_STORAGE_BYTES: u64 = 8 << 30;

enum EntryError {
    Io(std::io::Error),
    Other(String),
}

/// Reads one zip entry, refusing it when it declares more than `limit` bytes, and never
/// reading more than it declares (a lying header cannot make it read on).
fn read_entry<R: std::io::Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> std::result::Result<Vec<u8>, EntryError> {
    let entry = archive.by_name(name).map_err(|err| EntryError::Other(format!("{name}: {err}")))?;
    let declared = entry.size();
    if declared > limit {
        return Err(EntryError::Other(format!("{name} declares {declared} bytes; at most {limit} are read")));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    entry.take(declared).read_to_end(&mut bytes).map_err(EntryError::Io)?;
    Ok(bytes)
}

/// Reads a `pytorch_model.bin` (torch's zip format) without executing its pickle.
pub fn read_pytorch_bin(path: &Path) -> Result<Weights> {
    let io = |source| Error::Io { action: "reading", path: path.display().to_string(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = zip::ZipArchive::new(file).map_err(|err| {
        Error::Checkpoint(format!(
            "{} is not a zip-format torch checkpoint ({err}); re-save it with torch >= 1.6",
            path.display()
        ))
    })?;
    let pickle_name = (0..archive.len())
        .filter_map(|i| archive.name_for_index(i).and_then(Result::ok).map(|name| name.into_owned()))
        .find(|name| name.ends_with("/data.pkl") || name == "data.pkl")
        .ok_or_else(|| Error::Checkpoint(format!("{} holds no data.pkl", path.display())))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_owned();
    let pickle_bytes = read_entry(&mut archive, &pickle_name, MAX_PICKLE_BYTES).map_err(|err| match err {
        EntryError::Io(source) => io(source),
        EntryError::Other(message) => Error::Checkpoint(format!("{}: {message}", path.display())),
    })?;
    let root = pickle::parse(&pickle_bytes)?;
    let Value::Dict(entries) = root else {
        return Err(Error::Checkpoint(format!("{}: the pickle is not a state dict", path.display())));
    };
    let mut weights = Weights::new();
    for (key, value) in entries {
        let Value::Str(name) = key else { continue };
        let Some(tensor) = tensor_ref(&value) else {
            tracing::debug!(name, "skipping a state-dict entry that is not a tensor");
            continue;
        };
        if matches!(tensor.dtype, "long" | "int" | "other") {
            tracing::debug!(name, dtype = tensor.dtype, "skipping a non-float tensor");
            continue;
        }
        let storage =
            read_entry(&mut archive, &format!("{prefix}data/{}", tensor.key), MAX_STORAGE_BYTES).map_err(|err| {
                match err {
                    EntryError::Io(source) => io(source),
                    EntryError::Other(message) => {
                        Error::Checkpoint(format!("{}: storage {} of {name}: {message}", path.display(), tensor.key))
                    }
                }
            })?;
        let values = decode(&storage, tensor.dtype, &name)?;
        // Shapes come from the pickle: check them against the storage before allocating.
        let count = tensor
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&count| count <= values.len())
            .ok_or_else(|| {
                Error::Checkpoint(format!(
                    "{name}: shape {:?} needs more values than its storage holds ({})",
                    tensor.shape,
                    values.len()
                ))
            })?;
        // Gather through the strides (state dicts are almost always contiguous, but views are not).
        let mut data = Vec::with_capacity(count);
        let mut index = vec![0usize; tensor.shape.len()];
        for _ in 0..count {
            let at = tensor.offset + index.iter().zip(&tensor.stride).map(|(i, s)| i * s).sum::<usize>();
            data.push(*values.get(at).ok_or_else(|| Error::Checkpoint(format!("{name}: storage too short")))?);
            for axis in (0..index.len()).rev() {
                index[axis] += 1;
                if index[axis] < tensor.shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        weights.insert(name, Tensor { shape: tensor.shape, data });
    }
    Ok(weights)
}
