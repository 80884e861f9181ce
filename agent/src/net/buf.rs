//! A relay's byte buffer, allocated once for the session: frames are read, sealed and opened in
//! place in it, with no zeroing, growing or shifting per frame.

/// Bytes between `start` and `end` of a fixed allocation, room after them.
pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    pub fn new(capacity: usize) -> Buf {
        Buf {
            data: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The bytes held.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Drops the first `n` bytes held.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// The room after the bytes held: at least `want` bytes if the buffer can give them, the
    /// bytes held moved to the front for it if need be (rare: only behind a slow peer).
    pub fn room(&mut self, want: usize) -> &mut [u8] {
        if self.data.len() - self.end < want && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    /// Adds the first `n` bytes of the room to the bytes held.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_in_and_out_in_order_and_room_is_made_at_the_front() {
        let mut b = Buf::new(8);
        b.room(4)[..5].copy_from_slice(b"hello");
        b.commit(5);
        assert_eq!(b.filled(), b"hello");
        b.consume(3);
        assert_eq!((b.filled(), b.len()), (&b"lo"[..], 2));
        // 3 bytes are free at the end; asking for 5 moves "lo" to the front.
        assert_eq!(b.room(5).len(), 6);
        b.room(0)[..3].copy_from_slice(b"!!!");
        b.commit(3);
        assert_eq!(b.filled(), b"lo!!!");
        b.consume(5);
        assert!(b.is_empty());
        assert_eq!(b.room(8).len(), 8, "an emptied buffer starts at the front");
    }
}
