//! Variable-length records in size-classed slots of 4 KiB chunks.
//!
//! A record lives in a slot of its size class (4-byte steps to 256 bytes, 16-byte
//! steps to 1 KiB, 64-byte steps to 4 KiB; larger ones get a chunk of their own).
//! A handle is `chunk << 12 | offset` (u32: up to 2^20 chunks, 4 GiB of records).
//! Free slots form an intrusive list per class (the next handle in the slot's
//! first 4 bytes), so a freed slot costs nothing to track. A record that grows or
//! shrinks out of its class moves (the caller updates the handle it keeps).
//! Memory: every chunk allocated, in full, is counted by `heap_bytes`.

pub const CHUNK: usize = 4096;
const NONE: u32 = u32::MAX;
const N_CLASSES: usize = 160;
const HUGE: u8 = 255;

#[inline]
pub fn class_of(len: usize) -> (usize, usize) {
    let len = len.max(4);
    if len <= 256 {
        let s = (len + 3) & !3;
        (s / 4 - 1, s)
    } else if len <= 1024 {
        let s = (len + 15) & !15;
        (64 + (s - 256) / 16 - 1, s)
    } else if len <= 4096 {
        let s = (len + 63) & !63;
        (112 + (s - 1024) / 64 - 1, s)
    } else {
        (usize::MAX, (len + 63) & !63)
    }
}

pub struct Slab {
    chunks: Vec<Box<[u8]>>,
    chunk_class: Vec<u8>,
    free_head: [u32; N_CLASSES],
    // the chunk each class bumps slots out of, and the next offset in it
    bump: [(u32, u32); N_CLASSES],
    free_chunks: Vec<u32>, // chunk indexes of freed huge records
    pub live_slot_bytes: usize,
}

impl Slab {
    pub fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            chunk_class: Vec::new(),
            free_head: [NONE; N_CLASSES],
            bump: [(NONE, 0); N_CLASSES],
            free_chunks: Vec::new(),
            live_slot_bytes: 0,
        }
    }

    #[inline]
    fn slot_size_of_class(c: usize) -> usize {
        if c < 64 {
            (c + 1) * 4
        } else if c < 112 {
            256 + (c - 63) * 16
        } else {
            1024 + (c - 111) * 64
        }
    }

    fn new_chunk(&mut self, class: u8, size: usize) -> u32 {
        if class == HUGE {
            if let Some(ci) = self.free_chunks.pop() {
                self.chunks[ci as usize] = vec![0u8; size].into_boxed_slice();
                self.chunk_class[ci as usize] = HUGE;
                return ci;
            }
        }
        let ci = self.chunks.len() as u32;
        assert!(ci < (1 << 20), "slab: out of chunk handles");
        self.chunks.push(vec![0u8; size].into_boxed_slice());
        self.chunk_class.push(class);
        ci
    }

    /// A slot for `len` bytes (contents unspecified).
    #[inline]
    pub fn alloc(&mut self, len: usize) -> u32 {
        let (c, size) = class_of(len);
        self.live_slot_bytes += size;
        if c == usize::MAX {
            let ci = self.new_chunk(HUGE, size);
            return ci << 12;
        }
        let head = self.free_head[c];
        if head != NONE {
            let s = self.get(head);
            self.free_head[c] = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            return head;
        }
        let (ci, off) = self.bump[c];
        if ci != NONE && off as usize + size <= CHUNK {
            self.bump[c] = (ci, off + size as u32);
            return ci << 12 | off;
        }
        let ci = self.new_chunk(c as u8, CHUNK);
        self.bump[c] = (ci, size as u32);
        ci << 12
    }

    #[inline]
    pub fn free(&mut self, h: u32) {
        let ci = (h >> 12) as usize;
        let c = self.chunk_class[ci];
        if c == HUGE {
            self.live_slot_bytes -= self.chunks[ci].len();
            self.chunks[ci] = Box::new([]);
            self.free_chunks.push(ci as u32);
            return;
        }
        let c = c as usize;
        self.live_slot_bytes -= Self::slot_size_of_class(c);
        let next = self.free_head[c];
        self.get_mut(h)[..4].copy_from_slice(&next.to_le_bytes());
        self.free_head[c] = h;
    }

    /// The slot's bytes (a record is self-delimiting; the slot may be longer).
    #[inline(always)]
    pub fn get(&self, h: u32) -> &[u8] {
        let ci = (h >> 12) as usize;
        let off = (h & 0xFFF) as usize;
        let c = self.chunk_class[ci];
        let chunk = &self.chunks[ci];
        if c == HUGE {
            return chunk;
        }
        &chunk[off..off + Self::slot_size_of_class(c as usize)]
    }

    #[inline(always)]
    pub fn get_mut(&mut self, h: u32) -> &mut [u8] {
        let ci = (h >> 12) as usize;
        let off = (h & 0xFFF) as usize;
        let c = self.chunk_class[ci];
        let chunk = &mut self.chunks[ci];
        if c == HUGE {
            return chunk;
        }
        &mut chunk[off..off + Self::slot_size_of_class(c as usize)]
    }

    /// Store `data` at `h` if it fits the same class, else move it; returns the
    /// handle that now holds it.
    #[inline]
    pub fn store(&mut self, h: u32, data: &[u8]) -> u32 {
        let ci = (h >> 12) as usize;
        let c = self.chunk_class[ci];
        let (nc, _) = class_of(data.len());
        let same = if c == HUGE {
            nc == usize::MAX && self.chunks[ci].len() >= data.len()
                && self.chunks[ci].len() < data.len() + 4096
        } else {
            nc == c as usize
        };
        if same {
            self.get_mut(h)[..data.len()].copy_from_slice(data);
            return h;
        }
        self.free(h);
        self.insert(data)
    }

    #[inline]
    pub fn insert(&mut self, data: &[u8]) -> u32 {
        let h = self.alloc(data.len());
        self.get_mut(h)[..data.len()].copy_from_slice(data);
        h
    }

    /// Heap bytes held: every chunk in full, plus the chunk tables' capacity.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Box<[u8]>>()
            + self.chunk_class.capacity()
            + self.free_chunks.capacity() * 4
    }
}
