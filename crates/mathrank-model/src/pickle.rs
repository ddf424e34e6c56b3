//! The small subset of Python's pickle that `torch.save` state dicts use, read without
//! executing anything: globals are recorded as names, never resolved or called.

use crate::{Error, Result};

/// A value on the unpickler's stack.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name`, as written by GLOBAL / STACK_GLOBAL.
    Global(String, String),
    /// A persistent id (torch's storage references).
    PersId(Box<Value>),
    /// `callable(*args)` recorded, not performed.
    Call(Box<Value>, Box<Value>),
    Mark,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Checkpoint(format!("pytorch_model.bin: {}", reason.into()))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| bad("pickle ends early"))?;
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| bad("short"))?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| bad("short"))?))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| bad("unterminated line"))?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

/// Values the parser may create, clones from the memo included. A state dict needs a few per
/// tensor; a "memo bomb" (a few hundred bytes that GET the same growing list over and over)
/// needs exponentially many, and stops here with an error instead of exhausting memory.
const MAX_NODES: usize = 4_000_000;
/// Nesting depth: deeper values could overflow the stack when dropped.
const MAX_DEPTH: usize = 256;

/// Size and depth of a value, kept beside it so that no check walks a value.
#[derive(Debug, Clone, Copy)]
struct Meta {
    nodes: usize,
    depth: usize,
}

const LEAF: Meta = Meta { nodes: 1, depth: 1 };

/// The unpickler's stack with every value's size and depth, and the node budget.
struct Machine {
    stack: Vec<(Value, Meta)>,
    created: usize,
}

impl Machine {
    fn spend(&mut self, nodes: usize) -> Result<()> {
        self.created = self.created.saturating_add(nodes);
        if self.created > MAX_NODES {
            return Err(bad(format!(
                "the pickle builds more than {MAX_NODES} values (a memo bomb?); a state dict needs far fewer"
            )));
        }
        Ok(())
    }

    fn push(&mut self, value: Value) -> Result<()> {
        self.spend(1)?;
        self.stack.push((value, LEAF));
        Ok(())
    }

    /// Pushes a composite made of `items`: one new node over theirs.
    fn push_composite(&mut self, make: impl FnOnce(Vec<Value>) -> Value, items: Vec<(Value, Meta)>) -> Result<()> {
        let meta = combine(LEAF, &items)?;
        self.spend(1)?;
        self.stack.push((make(items.into_iter().map(|(v, _)| v).collect()), meta));
        Ok(())
    }

    fn pop(&mut self) -> Result<(Value, Meta)> {
        self.stack.pop().ok_or_else(|| bad("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<(Value, Meta)>> {
        let mark =
            self.stack.iter().rposition(|(v, _)| *v == Value::Mark).ok_or_else(|| bad("no MARK on the stack"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }
}

/// The meta of `base` grown by `items` below it.
fn combine(base: Meta, items: &[(Value, Meta)]) -> Result<Meta> {
    let nodes = items.iter().fold(base.nodes, |n, (_, m)| n.saturating_add(m.nodes));
    let depth = items.iter().map(|(_, m)| m.depth + 1).fold(base.depth, usize::max);
    if depth > MAX_DEPTH {
        return Err(bad(format!("values nest deeper than {MAX_DEPTH} levels; a state dict nests a few")));
    }
    Ok(Meta { nodes, depth })
}

/// Parses a pickle into its final value, in bounded memory.
pub fn parse(data: &[u8]) -> Result<Value> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine { stack: Vec::new(), created: 0 };
    let mut memo: std::collections::HashMap<u32, (Value, Meta)> = std::collections::HashMap::new();
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?;
            } // PROTO
            0x95 => {
                r.take(8)?;
            } // FRAME
            b'.' => return m.pop().map(|(value, _)| value),
            b'}' => m.push(Value::Dict(Vec::new()))?,
            b']' => m.push(Value::List(Vec::new()))?,
            b')' => m.push(Value::Tuple(Vec::new()))?,
            b'(' => m.push(Value::Mark)?,
            b'N' => m.push(Value::None)?,
            0x88 => m.push(Value::Bool(true))?,
            0x89 => m.push(Value::Bool(false))?,
            b'K' => m.push(Value::Int(i64::from(r.u8()?)))?,
            b'M' => m.push(Value::Int(i64::from(r.u16()?)))?,
            b'J' => m.push(Value::Int(i64::from(r.u32()? as i32)))?,
            0x8a => {
                let n = r.u8()? as usize;
                let bytes = r.take(n)?;
                if n > 8 {
                    return Err(bad("LONG1 wider than 64 bits"));
                }
                let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                buf[..n].copy_from_slice(bytes);
                m.push(Value::Int(i64::from_le_bytes(buf)))?;
            }
            b'G' => {
                let bytes: [u8; 8] = r.take(8)?.try_into().map_err(|_| bad("short float"))?;
                m.push(Value::Float(f64::from_be_bytes(bytes)))?;
            }
            b'X' => {
                let n = r.u32()? as usize;
                m.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()))?;
            }
            0x8c => {
                let n = r.u8()? as usize;
                m.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()))?;
            }
            b'C' => {
                let n = r.u8()? as usize;
                m.push(Value::Bytes(r.take(n)?.to_vec()))?;
            }
            b'B' => {
                let n = r.u32()? as usize;
                m.push(Value::Bytes(r.take(n)?.to_vec()))?;
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                m.push(Value::Global(module, name))?;
            }
            0x93 => {
                let (name, _) = m.pop()?;
                let (module, _) = m.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => m.push(Value::Global(module, name))?,
                    _ => return Err(bad("STACK_GLOBAL needs two strings")),
                }
            }
            b'Q' => {
                let id = m.pop()?;
                m.push_composite(|mut items| Value::PersId(Box::new(items.remove(0))), vec![id])?;
            }
            b'R' | 0x81 => {
                let args = m.pop()?;
                let callable = m.pop()?;
                m.push_composite(
                    |mut items| {
                        let args = items.pop().unwrap_or(Value::None);
                        let callable = items.pop().unwrap_or(Value::None);
                        Value::Call(Box::new(callable), Box::new(args))
                    },
                    vec![callable, args],
                )?;
            }
            b'b' => {
                // BUILD: object state; torch's state dicts put metadata here, which is not needed.
                m.pop()?;
            }
            b't' => {
                let items = m.pop_mark()?;
                m.push_composite(Value::Tuple, items)?;
            }
            0x85..=0x87 => {
                let count = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(m.pop()?);
                }
                items.reverse();
                m.push_composite(Value::Tuple, items)?;
            }
            b'q' | b'r' | 0x94 => {
                let key = match op {
                    b'q' => u32::from(r.u8()?),
                    b'r' => r.u32()?,
                    _ => memo.len() as u32,
                };
                let top = m.stack.last().cloned().ok_or_else(|| bad("memo PUT on an empty stack"))?;
                m.spend(top.1.nodes)?;
                memo.insert(key, top);
            }
            b'h' | b'j' => {
                let key = if op == b'h' { u32::from(r.u8()?) } else { r.u32()? };
                let (value, meta) = memo.get(&key).ok_or_else(|| bad("memo GET of an unknown key"))?;
                // A GET copies the value: it costs its whole size.
                let (value, meta) = (value.clone(), *meta);
                m.spend(meta.nodes)?;
                m.stack.push((value, meta));
            }
            b's' | b'u' => {
                let items = if op == b'u' {
                    m.pop_mark()?
                } else {
                    let value = m.pop()?;
                    let key = m.pop()?;
                    vec![key, value]
                };
                let (target, meta) = m.stack.last_mut().ok_or_else(|| bad("SETITEMS without a dict"))?;
                *meta = combine(*meta, &items)?;
                let values: Vec<Value> = items.into_iter().map(|(v, _)| v).collect();
                let mut values = values.into_iter();
                let mut pairs = Vec::new();
                while let (Some(key), Some(value)) = (values.next(), values.next()) {
                    pairs.push((key, value));
                }
                match target {
                    Value::Dict(entries) => entries.extend(pairs),
                    // An OrderedDict is `Call(OrderedDict, ())`: keep its items as a dict.
                    Value::Call(_, _) => *target = Value::Dict(pairs),
                    _ => return Err(bad("SETITEMS on something that is not a dict")),
                }
            }
            b'a' | b'e' => {
                let items = if op == b'e' { m.pop_mark()? } else { vec![m.pop()?] };
                match m.stack.last_mut() {
                    Some((Value::List(list), meta)) => {
                        *meta = combine(*meta, &items)?;
                        list.extend(items.into_iter().map(|(v, _)| v));
                    }
                    _ => return Err(bad("APPEND on something that is not a list")),
                }
            }
            other => return Err(bad(format!("unsupported pickle opcode 0x{other:02x} at byte {}", r.pos - 1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_globals_calls_and_dicts_without_running_them() {
        // {"a": os.system("rm -rf /")} as pickle protocol 2: recorded as a call, never made.
        let data = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01cos\nsystem\nq\x02X\x08\x00\x00\x00rm -rf /\x85Rq\x03s.";
        let value = parse(data).unwrap();
        let Value::Dict(entries) = value else { panic!("{value:?}") };
        assert_eq!(entries[0].0, Value::Str("a".into()));
        assert_eq!(
            entries[0].1,
            Value::Call(
                Box::new(Value::Global("os".into(), "system".into())),
                Box::new(Value::Tuple(vec![Value::Str("rm -rf /".into())]))
            )
        );
    }

    #[test]
    fn small_ints_tuples_and_memo() {
        let data = b"\x80\x02(K\x01M\x00\x01J\xff\xff\xff\xff\x8a\x01\x05tq\x00h\x00\x86.";
        let value = parse(data).unwrap();
        let inner = Value::Tuple(vec![Value::Int(1), Value::Int(256), Value::Int(-1), Value::Int(5)]);
        assert_eq!(value, Value::Tuple(vec![inner.clone(), inner]));
    }

    /// `]` then, `rounds` times: GET the list twice and append both copies to it. Each round
    /// doubles the list: a few hundred bytes ask for 2^rounds values.
    fn memo_bomb(rounds: usize) -> Vec<u8> {
        let mut data = b"\x80\x02]q\x00".to_vec();
        for _ in 0..rounds {
            data.extend_from_slice(b"(h\x00h\x00eq\x00");
        }
        data.push(b'.');
        data
    }

    #[test]
    fn memo_bombs_and_deep_nesting_are_refused() {
        assert!(parse(&memo_bomb(3)).is_ok(), "a small self-referencing pickle is fine");
        let err = parse(&memo_bomb(64)).unwrap_err().to_string();
        assert!(err.contains("memo bomb"), "{err}");
        // 10 000 nested one-tuples: refused before they could overflow the stack on drop.
        let mut deep = b"\x80\x02N".to_vec();
        deep.extend(std::iter::repeat_n(0x85u8, 10_000));
        deep.push(b'.');
        assert!(parse(&deep).unwrap_err().to_string().contains("nest deeper"));
    }

    proptest::proptest! {
        /// Random bytes, and random opcode soups built from the supported opcodes, end in a
        /// value or a clear error: never a panic, never unbounded work.
        #[test]
        fn arbitrary_pickles_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&data);
        }

        #[test]
        fn opcode_soups_never_panic(ops in proptest::collection::vec(proptest::sample::select(
            b"}])(N\x88\x89KtqhsuaeRb\x85\x86\x87\x94Q.".to_vec()), 0..400)) {
            let mut data = vec![0x80, 0x02];
            for op in ops {
                data.push(op);
                if matches!(op, b'K' | b'q' | b'h') {
                    data.push(0);
                }
            }
            let _ = parse(&data);
        }
    }

    #[test]
    fn truncated_or_unknown_input_is_an_error_not_a_panic() {
        assert!(parse(b"\x80\x02(K").is_err());
        assert!(parse(b"\xff").unwrap_err().to_string().contains("unsupported pickle opcode"));
        assert!(parse(b"").is_err());
        assert!(parse(b"t.").is_err());
    }
}
