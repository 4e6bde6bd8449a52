//! smtpd's allocator: the C library's, except for blocks aligned to 128
//! bytes, which come from slabs of their own.
//!
//! tokio aligns every task and every socket's registration to 128 bytes
//! (a cache line pair). glibc serves such a request with `posix_memalign`,
//! which takes the size plus the alignment from the heap and gives back the
//! misaligned head and the unused tail as small free blocks that nothing
//! of the same size fits again: about 200 bytes lost per idle session (two
//! such blocks each), and 1,600 instructions per call. Here those blocks
//! (up to 1 KB, in sizes rounded up to 128) are cut from 64 KB slabs, 128
//! bytes apart, and a freed block goes back on its size's list for the
//! next task or socket of that size. Slabs are kept for the life of the
//! process, as the C library keeps most of a heap that has grown.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::Mutex;

/// The alignment served from slabs.
const ALIGN: usize = 128;
/// Block sizes: 128, 256, … 1024.
const CLASSES: usize = 8;
/// A slab's size.
const SLAB: usize = 64 * 1024;

/// The C library's allocator, with slabs for 128-byte-aligned blocks.
pub struct Allocator {
    free: [Mutex<FreeList>; CLASSES],
}

/// Free blocks of one size, linked through their first word.
struct FreeList(*mut u8);

// SAFETY: the list is only read and changed under its mutex; the blocks it
// links are owned by the allocator, not by any thread.
#[allow(unsafe_code)]
unsafe impl Send for FreeList {}

impl Allocator {
    pub const fn new() -> Allocator {
        Allocator {
            free: [const { Mutex::new(FreeList(ptr::null_mut())) }; CLASSES],
        }
    }
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator::new()
    }
}

/// The slab class of a layout, if it is served from slabs.
fn class(layout: &Layout) -> Option<usize> {
    (layout.align() == ALIGN && layout.size() <= ALIGN * CLASSES)
        .then(|| layout.size().max(1).div_ceil(ALIGN) - 1)
}

impl Allocator {
    /// A block of class `c` (`(c + 1) * 128` bytes), from its list or a new slab.
    #[allow(unsafe_code)]
    fn take(&self, c: usize) -> *mut u8 {
        let mut list = match self.free[c].lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if list.0.is_null() {
            let size = (c + 1) * ALIGN;
            // SAFETY: a valid, non-zero layout.
            let slab =
                unsafe { System.alloc(Layout::from_size_align(SLAB, ALIGN).expect("layout")) };
            if slab.is_null() {
                return ptr::null_mut();
            }
            // Every block of the slab on the list, each pointing to the next.
            let blocks = SLAB / size;
            for i in 0..blocks {
                // SAFETY: inside the slab; 128-aligned, so a pointer fits.
                unsafe {
                    let block = slab.add(i * size);
                    let next = if i + 1 < blocks {
                        slab.add((i + 1) * size)
                    } else {
                        ptr::null_mut()
                    };
                    block.cast::<*mut u8>().write(next);
                }
            }
            list.0 = slab;
        }
        let block = list.0;
        // SAFETY: a free block on the list holds the next one's address.
        list.0 = unsafe { block.cast::<*mut u8>().read() };
        block
    }

    /// Puts a block of class `c` back on its list.
    #[allow(unsafe_code)]
    fn give(&self, c: usize, block: *mut u8) {
        let mut list = match self.free[c].lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        // SAFETY: the block is ours (taken from this class) and free now.
        unsafe { block.cast::<*mut u8>().write(list.0) };
        list.0 = block;
    }
}

// SAFETY: blocks from slabs are 128-aligned and at least as large as asked
// (their class's size); they are given out once until freed. Everything
// else is the C library's (`System`), with its own guarantees.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class(&layout) {
            Some(c) => self.take(c),
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class(&layout) {
            Some(c) => self.give(c, ptr),
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class(&layout) {
            Some(c) => {
                let p = self.take(c);
                if !p.is_null() {
                    unsafe { ptr::write_bytes(p, 0, layout.size()) };
                }
                p
            }
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(&layout), class(&new)) {
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            (Some(a), Some(b)) if a == b => ptr,
            _ => {
                let p = unsafe { self.alloc(new) };
                if !p.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                p
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_blocks_come_from_slabs_aligned_whole_and_reused() {
        let a = Allocator::new();
        #[allow(unsafe_code)]
        unsafe {
            let mut held = Vec::new();
            // More than a slab's worth of each size.
            for size in [1, 100, 128, 129, 256, 512, 640, 1024] {
                let layout = Layout::from_size_align(size, ALIGN).expect("layout");
                for _ in 0..(SLAB / 128 + 3) {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % ALIGN, 0, "aligned");
                    ptr::write_bytes(p, 0xA5, size);
                    held.push((p, layout));
                }
            }
            // No two blocks overlap.
            let mut spans: Vec<(usize, usize)> = held
                .iter()
                .map(|(p, l)| (*p as usize, *p as usize + l.size()))
                .collect();
            spans.sort();
            assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "overlap");
            // A freed block is the next one given of its size.
            let (p, layout) = held.pop().expect("one");
            a.dealloc(p, layout);
            assert_eq!(a.alloc(layout), p);
            a.dealloc(p, layout);
            for (p, layout) in held {
                a.dealloc(p, layout);
            }
        }
    }

    #[test]
    fn threads_taking_and_giving_blocks_never_share_one() {
        static A: Allocator = Allocator::new();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut held: Vec<(usize, Layout)> = Vec::new();
                    let mut x = 0x9E37_79B9u32 ^ u32::from(t);
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        #[allow(unsafe_code)]
                        unsafe {
                            if held.len() < 64 && (x & 1 == 0 || held.is_empty()) {
                                let size = 1 + (x as usize >> 8) % 1024;
                                let layout = Layout::from_size_align(size, ALIGN).expect("layout");
                                let p = A.alloc(layout);
                                assert!(!p.is_null());
                                // Marked with its owner: read back when freed.
                                ptr::write_bytes(p, t, size);
                                p.add(size - 1).write(t ^ 0xFF);
                                held.push((p as usize, layout));
                            } else {
                                let (p, layout) = held.swap_remove(x as usize % held.len());
                                let p = p as *mut u8;
                                let size = layout.size();
                                assert!((0..size - 1).all(|i| *p.add(i) == t), "a block shared");
                                assert_eq!(*p.add(size - 1), t ^ 0xFF);
                                A.dealloc(p, layout);
                            }
                        }
                    }
                    for (p, layout) in held {
                        #[allow(unsafe_code)]
                        unsafe {
                            A.dealloc(p as *mut u8, layout)
                        };
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
    }

    #[test]
    fn other_layouts_are_the_c_librarys_and_realloc_keeps_the_bytes() {
        let a = Allocator::new();
        #[allow(unsafe_code)]
        unsafe {
            assert_eq!(class(&Layout::from_size_align(64, 8).expect("l")), None);
            assert_eq!(
                class(&Layout::from_size_align(2048, ALIGN).expect("l")),
                None
            );
            assert_eq!(
                class(&Layout::from_size_align(512, ALIGN).expect("l")),
                Some(3)
            );
            // Grown from a slab block into the C library's and back.
            let small = Layout::from_size_align(200, ALIGN).expect("l");
            let p = a.alloc(small);
            for i in 0..200 {
                *p.add(i) = i as u8;
            }
            let q = a.realloc(p, small, 4000);
            assert_eq!(q as usize % ALIGN, 0);
            assert!((0..200).all(|i| *q.add(i) == i as u8));
            let big = Layout::from_size_align(4000, ALIGN).expect("l");
            let r = a.realloc(q, big, 300);
            assert!((0..200).all(|i| *r.add(i) == i as u8));
            a.dealloc(r, Layout::from_size_align(300, ALIGN).expect("l"));
            let z = a.alloc_zeroed(small);
            assert!((0..200).all(|i| *z.add(i) == 0));
            a.dealloc(z, small);
        }
    }
}
