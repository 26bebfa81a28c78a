//! Reading the dynamic section of an ELF shared library: the libraries it needs and its
//! run path, without loading it (the CUDA provider is 280 MB; only a few pages are read).
//!
//! 64-bit little-endian ELF only (x86_64, aarch64), which is what ONNX Runtime ships.

use std::{fs::File, os::unix::fs::FileExt, path::Path};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// What the dynamic section of a shared library says about linking it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `DT_NEEDED`, in file order.
    pub needed: Vec<String>,
    pub soname: Option<String>,
    /// `DT_RUNPATH`, else `DT_RPATH`, split at `:`.
    pub runpath: Vec<String>,
}

/// Reads `path`'s dynamic section. Errors are plain sentences naming what is wrong.
pub fn dynamic_info(path: &Path) -> Result<DynamicInfo, String> {
    let f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let read = |offset: u64, len: usize| -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| format!("truncated at byte {offset}: {e}"))?;
        Ok(buf)
    };
    let header = read(0, 64).map_err(|_| "not an ELF file (shorter than an ELF header)")?;
    if &header[..4] != b"\x7fELF" {
        return Err("not an ELF file (no ELF magic number)".into());
    }
    if header[4] != 2 || header[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let phoff = u64_at(&header, 0x20);
    let phentsize = u16_at(&header, 0x36) as usize;
    let phnum = u16_at(&header, 0x38) as usize;
    if phentsize < 56 {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    let table = read(phoff, phentsize * phnum)?;
    // (offset, vaddr, filesz) of the loaded segments, to turn addresses into file offsets.
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum {
        let ph = &table[i * phentsize..(i + 1) * phentsize];
        let (kind, offset, vaddr, filesz) =
            (u32_at(ph, 0), u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 32));
        match kind {
            PT_LOAD => loads.push((offset, vaddr, filesz)),
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            _ => {}
        }
    }
    let (dyn_offset, dyn_size) = dynamic.ok_or("no dynamic section (a static executable?)")?;
    let entries = read(dyn_offset, dyn_size as usize)?;
    let mut strtab = None;
    let mut needed = Vec::new();
    let (mut soname, mut runpath, mut rpath) = (None, None, None);
    for e in entries.chunks_exact(16) {
        let (tag, val) = (u64_at(e, 0), u64_at(e, 8));
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(val),
            DT_STRTAB => strtab = Some(val),
            DT_SONAME => soname = Some(val),
            DT_RUNPATH => runpath = Some(val),
            DT_RPATH => rpath = Some(val),
            _ => {}
        }
    }
    let strtab = strtab.ok_or("dynamic section without a string table")?;
    let strtab = loads
        .iter()
        .find(|(_, vaddr, size)| (*vaddr..vaddr + size).contains(&strtab))
        .map(|(offset, vaddr, _)| strtab - vaddr + offset)
        .ok_or("the string table lies outside every loaded segment")?;
    let string = |at: u64| -> Result<String, String> {
        let mut out = Vec::new();
        let mut pos = strtab + at;
        loop {
            let chunk = read(pos, 64).or_else(|_| read(pos, 1))?;
            match chunk.iter().position(|&b| b == 0) {
                Some(end) => {
                    out.extend_from_slice(&chunk[..end]);
                    return String::from_utf8(out).map_err(|_| "a name that is not UTF-8".into());
                }
                None => {
                    out.extend_from_slice(&chunk);
                    pos += chunk.len() as u64;
                }
            }
        }
    };
    Ok(DynamicInfo {
        needed: needed.into_iter().map(string).collect::<Result<_, _>>()?,
        soname: soname.map(string).transpose()?,
        runpath: runpath
            .or(rpath)
            .map(string)
            .transpose()?
            .map(|p| p.split(':').map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_elf_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("libx.so");
        std::fs::write(
            &p,
            "<html><body>404: this is a web page, not a library</body></html>\n",
        )
        .unwrap();
        let err = dynamic_info(&p).unwrap_err();
        assert!(err.contains("no ELF magic number"), "{err}");
        std::fs::write(&p, b"\x7fELF").unwrap();
        assert!(
            dynamic_info(&p)
                .unwrap_err()
                .contains("shorter than an ELF header")
        );
    }
}
