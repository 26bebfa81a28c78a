//! Reading PyTorch checkpoints (`torch.save` of a state dict) without PyTorch.
//!
//! Two containers share one pickle format:
//! - the legacy format (PyTorch < 1.6 and `_use_new_zipfile_serialization=False`):
//!   pickles for a magic number, the protocol version, system info, the object and
//!   the list of storage keys, then each storage as an 8-byte little-endian element
//!   count followed by its raw little-endian elements, in the order of that list;
//! - the zip format: `<name>/data.pkl` holds the object, `<name>/data/<key>` each storage.
//!
//! Tensors appear in the object pickle as calls of `torch._utils._rebuild_tensor_v2`
//! on a storage persistent id `('storage', type, key, location, numel, ...)`; the
//! reader interprets the few opcodes such files use and names any other it meets.

use std::{
    collections::{BTreeMap, HashMap},
    io::Read,
    path::{Path, PathBuf},
};

use crate::{Error, Result};

/// Element types of PyTorch storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    fn read(self, b: &[u8]) -> f64 {
        match self {
            DType::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
            DType::F64 => f64::from_le_bytes(b.try_into().unwrap()),
            DType::F16 => f16_to_f32(u16::from_le_bytes(b.try_into().unwrap())) as f64,
            DType::BF16 => {
                f32::from_bits((u16::from_le_bytes(b.try_into().unwrap()) as u32) << 16) as f64
            }
            DType::I64 => i64::from_le_bytes(b.try_into().unwrap()) as f64,
            DType::I32 => i32::from_le_bytes(b.try_into().unwrap()) as f64,
            DType::I16 => i16::from_le_bytes(b.try_into().unwrap()) as f64,
            DType::I8 => b[0] as i8 as f64,
            DType::U8 | DType::Bool => b[0] as f64,
        }
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: value = f * 2^-24
            return f32::from_bits(sign)
                + (if sign != 0 { -1.0 } else { 1.0 }) * (f as f32) * 2f32.powi(-24);
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | (((e - 15 + 127) as u32) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// One tensor of a checkpoint, copied out of its storage in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Values converted to f32 (floats) — integers are kept in `ints`.
    values: Vec<f32>,
    ints: Vec<i64>,
}

impl Tensor {
    /// The values of a floating-point tensor.
    pub fn f32s(&self) -> Option<&[f32]> {
        self.dtype.is_float().then_some(self.values.as_slice())
    }
    /// The values of an integer tensor.
    pub fn i64s(&self) -> Option<&[i64]> {
        (!self.dtype.is_float()).then_some(self.ints.as_slice())
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A state dict: parameter name to tensor, in the checkpoint's order.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: Vec<(String, Tensor)>,
}

impl Checkpoint {
    /// Reads a checkpoint in either container format.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| tl_core::Error::io("cannot read checkpoint", path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses checkpoint bytes; `path` names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.starts_with(b"PK\x03\x04") {
            read_zip(bytes, path)
        } else if bytes.first() == Some(&0x80) {
            read_legacy(bytes, path)
        } else {
            Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: "not a PyTorch checkpoint (neither a zip archive nor a pickle)".into(),
            })
        }
    }

    /// Looks a tensor up by name.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    /// Parameter names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(k, _)| k.as_str())
    }
}

// ---------------------------------------------------------------- pickle values

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64, as little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// The result of calling something the reader does not model.
    Object(Box<Value>, Box<Value>),
}

#[derive(Debug, Clone, PartialEq)]
struct StorageRef {
    dtype: DType,
    key: String,
    numel: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct TensorRef {
    storage: StorageRef,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn opcode_name(code: u8) -> &'static str {
    match code {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "UNKNOWN",
    }
}

/// A small pickle interpreter over a byte slice, one pickle per [`Unpickler::load`].
struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8], path: &'a Path) -> Self {
        Self { data, pos: 0, path }
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Checkpoint {
            path: self.path.to_path_buf(),
            reason: format!("{} (at byte {})", reason.into(), self.pos),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.data.len() - self.pos {
            return Err(self.err("unexpected end of file (truncated checkpoint?)"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated GLOBAL"))?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("invalid UTF-8 in string"))
    }

    /// Interprets one pickle up to its STOP and returns the top of the stack.
    fn load(&mut self) -> Result<Value> {
        let mut stack: Vec<Value> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        macro_rules! pop {
            () => {
                stack
                    .pop()
                    .ok_or_else(|| self.err("pickle stack underflow"))?
            };
        }
        macro_rules! pop_mark {
            () => {{
                let m = marks.pop().ok_or_else(|| self.err("pickle MARK missing"))?;
                if m > stack.len() {
                    return Err(self.err("pickle MARK beyond stack"));
                }
                stack.split_off(m)
            }};
        }
        loop {
            let at = self.pos as u64;
            let code = self.u8()?;
            match code {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => return stack.pop().ok_or_else(|| self.err("empty pickle")),
                b'(' => marks.push(stack.len()),
                b'}' => stack.push(Value::Dict(Vec::new())),
                b']' => stack.push(Value::List(Vec::new())),
                b')' => stack.push(Value::Tuple(Vec::new())),
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if code == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    let b = self.take(n)?.to_vec();
                    stack.push(long_value(b));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.utf8(n)?;
                    stack.push(Value::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.utf8(n)?;
                    stack.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = self.utf8(n)?;
                    stack.push(Value::Str(s));
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    stack.push(if code == b'T' {
                        Value::Str(String::from_utf8_lossy(&b).into_owned())
                    } else {
                        Value::Bytes(b)
                    });
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    stack.push(if code == b'U' {
                        Value::Str(String::from_utf8_lossy(&b).into_owned())
                    } else {
                        Value::Bytes(b)
                    });
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = pop!();
                    let module = pop!();
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    memo.insert(
                        k,
                        stack
                            .last()
                            .cloned()
                            .ok_or_else(|| self.err("BINPUT on empty stack"))?,
                    );
                }
                b'r' => {
                    let k = self.u32()?;
                    memo.insert(
                        k,
                        stack
                            .last()
                            .cloned()
                            .ok_or_else(|| self.err("LONG_BINPUT on empty stack"))?,
                    );
                }
                0x94 => {
                    let k = memo.len() as u32;
                    memo.insert(
                        k,
                        stack
                            .last()
                            .cloned()
                            .ok_or_else(|| self.err("MEMOIZE on empty stack"))?,
                    );
                }
                b'h' | b'j' => {
                    let k = if code == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let v = memo
                        .get(&k)
                        .cloned()
                        .ok_or_else(|| self.err(format!("memo key {k} not set")))?;
                    stack.push(v);
                }
                b't' => {
                    let items = pop_mark!();
                    stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (code - 0x84) as usize;
                    if stack.len() < n {
                        return Err(self.err("pickle stack underflow"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items));
                }
                b'a' => {
                    let v = pop!();
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.push(v),
                        _ => return Err(self.err("APPEND to a non-list")),
                    }
                }
                b'e' => {
                    let items = pop_mark!();
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err(self.err("APPENDS to a non-list")),
                    }
                }
                b's' => {
                    let v = pop!();
                    let k = pop!();
                    match stack.last_mut() {
                        Some(Value::Dict(d)) => d.push((k, v)),
                        _ => return Err(self.err("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = pop_mark!();
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd number of items"));
                    }
                    match stack.last_mut() {
                        Some(Value::Dict(d)) => {
                            let mut it = items.into_iter();
                            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                                d.push((k, v));
                            }
                        }
                        _ => return Err(self.err("SETITEMS on a non-dict")),
                    }
                }
                b'Q' => {
                    let pid = pop!();
                    stack.push(self.persistent(pid)?);
                }
                b'R' | 0x81 => {
                    let args = pop!();
                    let callable = pop!();
                    stack.push(self.reduce(callable, args)?);
                }
                b'b' => {
                    // State for the object below: an OrderedDict's `_metadata`, which a state dict does not need.
                    let _state = pop!();
                }
                b'0' => {
                    pop!();
                }
                b'1' => {
                    let _ = pop_mark!();
                }
                b'2' => {
                    let v = stack
                        .last()
                        .cloned()
                        .ok_or_else(|| self.err("DUP on empty stack"))?;
                    stack.push(v);
                }
                other => {
                    return Err(Error::UnsupportedOpcode {
                        path: self.path.to_path_buf(),
                        name: opcode_name(other),
                        code: other,
                        offset: at,
                    });
                }
            }
        }
    }

    fn persistent(&self, pid: Value) -> Result<Value> {
        let Value::Tuple(items) = pid else {
            return Err(self.err("persistent id is not a tuple"));
        };
        match items.as_slice() {
            [
                Value::Str(tag),
                Value::Global(_, class),
                Value::Str(key),
                _location,
                Value::Int(numel),
                ..,
            ] if tag == "storage" => {
                let dtype = DType::from_storage_class(class)
                    .ok_or_else(|| self.err(format!("unsupported storage type `{class}`")))?;
                Ok(Value::Storage(StorageRef {
                    dtype,
                    key: key.clone(),
                    numel: *numel as usize,
                }))
            }
            _ => Err(self.err(format!("unrecognised persistent id {items:?}"))),
        }
    }

    fn reduce(&self, callable: Value, args: Value) -> Result<Value> {
        let Value::Global(module, name) = &callable else {
            return Ok(Value::Object(Box::new(callable), Box::new(args)));
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("builtins", "dict") => Ok(Value::Dict(Vec::new())),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                let Value::Tuple(a) = args else {
                    return Err(self.err("_rebuild_tensor_v2 arguments are not a tuple"));
                };
                match a.as_slice() {
                    [
                        Value::Storage(s),
                        Value::Int(offset),
                        Value::Tuple(size),
                        Value::Tuple(stride),
                        ..,
                    ] => {
                        let dims = |t: &[Value]| -> Result<Vec<usize>> {
                            t.iter()
                                .map(|v| match v {
                                    Value::Int(i) if *i >= 0 => Ok(*i as usize),
                                    _ => Err(self.err(
                                        "tensor size or stride is not a non-negative integer",
                                    )),
                                })
                                .collect()
                        };
                        Ok(Value::Tensor(TensorRef {
                            storage: s.clone(),
                            offset: *offset as usize,
                            size: dims(size)?,
                            stride: dims(stride)?,
                        }))
                    }
                    _ => Err(self.err("unexpected arguments to _rebuild_tensor_v2")),
                }
            }
            ("torch._utils", "_rebuild_parameter") => match args {
                Value::Tuple(a) if !a.is_empty() => Ok(a.into_iter().next().unwrap()),
                _ => Err(self.err("unexpected arguments to _rebuild_parameter")),
            },
            _ => Ok(Value::Object(Box::new(callable), Box::new(args))),
        }
    }
}

fn long_value(b: Vec<u8>) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() <= 8 {
        let neg = b[b.len() - 1] & 0x80 != 0;
        let mut buf = if neg { [0xffu8; 8] } else { [0u8; 8] };
        buf[..b.len()].copy_from_slice(&b);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(b)
    }
}

/// The tensors of a loaded object: a state dict, or a dict holding one under
/// `state_dict` or `model`.
fn tensor_refs(obj: Value, path: &Path) -> Result<Vec<(String, TensorRef)>> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let Value::Dict(items) = obj else {
        return Err(bad("the checkpoint does not hold a dict of tensors (a whole pickled module is not supported; save its state_dict())".into()));
    };
    if items.iter().all(|(_, v)| !matches!(v, Value::Tensor(_))) {
        for (k, v) in &items {
            if let (Value::Str(k), Value::Dict(_)) = (k, v)
                && (k == "state_dict" || k == "model")
            {
                return tensor_refs(v.clone(), path);
            }
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let Value::Str(name) = k else {
            return Err(bad(format!("state dict key {k:?} is not a string")));
        };
        match v {
            Value::Tensor(t) => out.push((name, t)),
            other => {
                return Err(bad(format!(
                    "state dict entry `{name}` is not a tensor but {}",
                    kind_of(&other)
                )));
            }
        }
    }
    Ok(out)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) | Value::BigInt(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Global(..) => "a class or function",
        Value::Storage(_) => "a storage",
        Value::Tensor(_) => "a tensor",
        Value::Object(..) => "an object",
    }
}

/// Copies a strided tensor out of its storage bytes.
fn materialise(name: &str, t: &TensorRef, storage: &[u8], path: &Path) -> Result<Tensor> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("tensor `{name}`: {reason}"),
    };
    let es = t.storage.dtype.size();
    if t.size.len() != t.stride.len() {
        return Err(bad("size and stride have different ranks".into()));
    }
    let numel = t
        .size
        .iter()
        .try_fold(1usize, |n, &s| n.checked_mul(s))
        .ok_or_else(|| bad(format!("size {:?} overflows", t.size)))?;
    let held = storage.len() / es;
    // torch.save writes each tensor's storage whole: a tensor with more elements than its
    // storage is a view repeating elements (stride 0), which state dicts never hold, or a
    // damaged size; refusing it bounds what is allocated by the file's size.
    if numel > held {
        return Err(bad(format!(
            "{numel} elements in a storage holding {held} (truncated checkpoint, or a repeating view)"
        )));
    }
    let max_index = if numel == 0 {
        Some(0)
    } else {
        t.size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (s, st)| {
                acc.checked_add((s - 1).checked_mul(*st)?)
            })
    };
    let max_index = max_index.ok_or_else(|| bad("its strides overflow".into()))?;
    if numel > 0 && max_index >= held {
        return Err(bad(format!(
            "reaches element {max_index} of a storage holding {held} (truncated checkpoint?)"
        )));
    }
    let mut values = Vec::new();
    let mut ints = Vec::new();
    let float = t.storage.dtype.is_float();
    let mut idx = vec![0usize; t.size.len()];
    for _ in 0..numel {
        let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        let b = &storage[off * es..(off + 1) * es];
        if float {
            values.push(t.storage.dtype.read(b) as f32);
        } else {
            ints.push(match t.storage.dtype {
                DType::I64 => i64::from_le_bytes(b.try_into().unwrap()),
                d => d.read(b) as i64,
            });
        }
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(Tensor {
        shape: t.size.clone(),
        dtype: t.storage.dtype,
        values,
        ints,
    })
}

const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

fn read_legacy(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let mut u = Unpickler::new(bytes, path);
    let magic = u.load()?;
    if magic != Value::BigInt(LEGACY_MAGIC.to_vec()) {
        return Err(u.err("not a torch.save file: wrong magic number"));
    }
    match u.load()? {
        Value::Int(1001) => {}
        other => return Err(u.err(format!("unsupported legacy protocol version {other:?}"))),
    }
    if let Value::Dict(info) = u.load()? {
        let little = info
            .iter()
            .find(|(k, _)| *k == Value::Str("little_endian".into()))
            .map(|(_, v)| v.clone());
        if little == Some(Value::Bool(false)) {
            return Err(u.err("big-endian checkpoints are not supported"));
        }
    }
    let obj = u.load()?;
    let keys = match u.load()? {
        Value::List(keys) => keys
            .into_iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s),
                _ => Err(u.err("storage key is not a string")),
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(u.err("storage key list missing")),
    };
    let refs = tensor_refs(obj, path)?;
    let dtypes: HashMap<&str, DType> = refs
        .iter()
        .map(|(_, t)| (t.storage.key.as_str(), t.storage.dtype))
        .collect();
    let mut blocks: HashMap<String, &[u8]> = HashMap::new();
    for key in &keys {
        let numel = u.u64()? as usize;
        let es = dtypes
            .get(key.as_str())
            .ok_or_else(|| u.err(format!("storage `{key}` is listed but used by no tensor")))?
            .size();
        let len = numel
            .checked_mul(es)
            .ok_or_else(|| u.err(format!("storage `{key}` claims {numel} elements")))?;
        let block = u.take(len)?;
        blocks.insert(key.clone(), block);
    }
    let mut tensors = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        let block = blocks
            .get(&t.storage.key)
            .ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "tensor `{name}` uses storage `{}`, which the file does not contain",
                    t.storage.key
                ),
            })?;
        tensors.push((name.clone(), materialise(&name, &t, block, path)?));
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        tensors,
    })
}

/// How many times its archive's size a zip entry may expand to when read.
const MAX_EXPANSION: u64 = 16;

fn read_zip(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let zerr = |e: zip::result::ZipError| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("bad zip archive: {e}"),
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zerr)?;
    let pkl_name = archive
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "zip archive without a data.pkl (not a torch.save file)".into(),
        })?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    // torch.save stores its entries uncompressed; a compressed one may expand, up to
    // MAX_EXPANSION times the archive, no more (a damaged or hostile size field).
    let limit = (bytes.len() as u64).saturating_mul(MAX_EXPANSION);
    let mut read_entry = |name: &str| -> Result<Vec<u8>> {
        let f = archive.by_name(name).map_err(zerr)?;
        if f.size() > limit {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!(
                    "entry `{name}` claims {} bytes, more than {MAX_EXPANSION} times the archive",
                    f.size()
                ),
            });
        }
        let mut buf = Vec::with_capacity(f.size().min(bytes.len() as u64) as usize);
        f.take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("cannot read `{name}` from the archive: {e}"),
            })?;
        Ok(buf)
    };
    let pkl = read_entry(&pkl_name)?;
    let obj = Unpickler::new(&pkl, path).load()?;
    let refs = tensor_refs(obj, path)?;
    let mut blocks: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut tensors = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        if !blocks.contains_key(&t.storage.key) {
            let data = read_entry(&format!("{prefix}data/{}", t.storage.key))?;
            blocks.insert(t.storage.key.clone(), data);
        }
        let block = &blocks[&t.storage.key];
        tensors.push((name.clone(), materialise(&name, &t, block, path)?));
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        // IEEE 754 half-precision reference values.
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn long1_decodes_signed_values() {
        assert_eq!(long_value(vec![0xff]), Value::Int(-1));
        assert_eq!(long_value(vec![0x00, 0x01]), Value::Int(256));
        assert_eq!(
            long_value(LEGACY_MAGIC.to_vec()),
            Value::BigInt(LEGACY_MAGIC.to_vec())
        );
    }

    #[test]
    fn non_checkpoints_are_rejected_by_name() {
        let err = Checkpoint::from_bytes(b"hello", Path::new("w.pth"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("w.pth") && err.contains("not a PyTorch checkpoint"),
            "{err}"
        );
        // A pickle using an opcode the reader does not implement (INST) is named.
        let err = Checkpoint::from_bytes(&[0x80, 0x02, b'i'], Path::new("x.pth"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("INST"), "{err}");
        // Truncated inside the magic number.
        let err = Checkpoint::from_bytes(&[0x80, 0x02, 0x8a, 0x0a, 0x6c], Path::new("t.pth"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
