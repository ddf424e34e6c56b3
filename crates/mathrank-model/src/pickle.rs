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

fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>> {
    let mark = stack.iter().rposition(|v| *v == Value::Mark).ok_or_else(|| bad("no MARK on the stack"))?;
    let items = stack.split_off(mark + 1);
    stack.pop();
    Ok(items)
}

fn pop(stack: &mut Vec<Value>) -> Result<Value> {
    stack.pop().ok_or_else(|| bad("stack underflow"))
}

/// Parses a pickle into its final value.
pub fn parse(data: &[u8]) -> Result<Value> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: std::collections::HashMap<u32, Value> = std::collections::HashMap::new();
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?;
            } // PROTO
            0x95 => {
                r.take(8)?;
            } // FRAME
            b'.' => return pop(&mut stack),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(i64::from(r.u8()?))),
            b'M' => stack.push(Value::Int(i64::from(r.u16()?))),
            b'J' => stack.push(Value::Int(i64::from(r.u32()? as i32))),
            0x8a => {
                let n = r.u8()? as usize;
                let bytes = r.take(n)?;
                if n > 8 {
                    return Err(bad("LONG1 wider than 64 bits"));
                }
                let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                buf[..n].copy_from_slice(bytes);
                stack.push(Value::Int(i64::from_le_bytes(buf)));
            }
            b'G' => {
                let bytes: [u8; 8] = r.take(8)?.try_into().map_err(|_| bad("short float"))?;
                stack.push(Value::Float(f64::from_be_bytes(bytes)));
            }
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()));
            }
            b'C' => {
                let n = r.u8()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = r.u32()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => stack.push(Value::Global(module, name)),
                    _ => return Err(bad("STACK_GLOBAL needs two strings")),
                }
            }
            b'Q' => {
                let id = pop(&mut stack)?;
                stack.push(Value::PersId(Box::new(id)));
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(Value::Call(Box::new(callable), Box::new(args)));
            }
            b'b' => {
                // BUILD: object state; torch's state dicts put metadata here, which is not needed.
                pop(&mut stack)?;
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85 => {
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a]));
            }
            0x86 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b]));
            }
            0x87 => {
                let c = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::Tuple(vec![a, b, c]));
            }
            b'q' => {
                let key = u32::from(r.u8()?);
                memo.insert(key, stack.last().cloned().ok_or_else(|| bad("BINPUT on an empty stack"))?);
            }
            b'r' => {
                let key = r.u32()?;
                memo.insert(key, stack.last().cloned().ok_or_else(|| bad("LONG_BINPUT on an empty stack"))?);
            }
            0x94 => {
                let key = memo.len() as u32;
                memo.insert(key, stack.last().cloned().ok_or_else(|| bad("MEMOIZE on an empty stack"))?);
            }
            b'h' => {
                let key = u32::from(r.u8()?);
                stack.push(memo.get(&key).cloned().ok_or_else(|| bad("BINGET of an unknown memo key"))?);
            }
            b'j' => {
                let key = r.u32()?;
                stack.push(memo.get(&key).cloned().ok_or_else(|| bad("LONG_BINGET of an unknown memo key"))?);
            }
            b's' | b'u' => {
                let items = if op == b'u' {
                    pop_mark(&mut stack)?
                } else {
                    let value = pop(&mut stack)?;
                    let key = pop(&mut stack)?;
                    vec![key, value]
                };
                let target = stack.last_mut().ok_or_else(|| bad("SETITEMS without a dict"))?;
                let pairs = items.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone()));
                match target {
                    Value::Dict(entries) => entries.extend(pairs),
                    // An OrderedDict is `Call(OrderedDict, ())`: keep its items as a dict.
                    Value::Call(_, _) => {
                        *target = Value::Dict(pairs.collect());
                    }
                    _ => return Err(bad("SETITEMS on something that is not a dict")),
                }
            }
            b'a' | b'e' => {
                let items = if op == b'e' { pop_mark(&mut stack)? } else { vec![pop(&mut stack)?] };
                match stack.last_mut() {
                    Some(Value::List(list)) => list.extend(items),
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

    #[test]
    fn truncated_or_unknown_input_is_an_error_not_a_panic() {
        assert!(parse(b"\x80\x02(K").is_err());
        assert!(parse(b"\xff").unwrap_err().to_string().contains("unsupported pickle opcode"));
        assert!(parse(b"").is_err());
        assert!(parse(b"t.").is_err());
    }
}
