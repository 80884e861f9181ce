//! The transport ciphers of the agent's wire, sealing and opening frames in place: AES-256-GCM
//! where both ends have AES instructions, ChaCha20-Poly1305 otherwise (Noise's AESGCM and
//! ChaChaPoly transport, nonce layout included), both from `ring`, whose assembly runs them at
//! 3-4 times RustCrypto's speed here (docs/scaling.md, "Measured across nodes").

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

use crate::net_frame::{WireError, TAG_LEN};

/// A transport cipher, as its byte in the handshake's payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cipher {
    ChaChaPoly = 1,
    AesGcm = 2,
}

impl Cipher {
    /// The cipher of `byte`; `None` for one this version does not know (ignored in an offer).
    pub fn from_byte(byte: u8) -> Option<Cipher> {
        match byte {
            1 => Some(Cipher::ChaChaPoly),
            2 => Some(Cipher::AesGcm),
            _ => None,
        }
    }

    /// Noise's name of the cipher.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "ChaChaPoly",
            Cipher::AesGcm => "AESGCM",
        }
    }

    /// The ciphers this machine runs fast, best first: AES-GCM only with AES instructions (and
    /// carry-less multiply), since it is slow and large in software; ChaCha20-Poly1305 always.
    pub fn fast_here() -> &'static [Cipher] {
        if aes_is_fast() {
            &[Cipher::AesGcm, Cipher::ChaChaPoly]
        } else {
            &[Cipher::ChaChaPoly]
        }
    }
}

/// Whether this CPU has the instructions AES-GCM needs to beat ChaCha20-Poly1305.
pub fn aes_is_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        // Rust's "aes" on aarch64 includes PMULL.
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// One direction's key, from the handshake's split.
pub(crate) struct Key {
    cipher: Cipher,
    key: LessSafeKey,
    /// The key's bytes, for a hand-off to another process (`net_handoff`).
    raw: [u8; 32],
}

impl Key {
    pub(crate) fn new(cipher: Cipher, key: &[u8; 32]) -> Key {
        let algorithm = match cipher {
            Cipher::ChaChaPoly => &CHACHA20_POLY1305,
            Cipher::AesGcm => &AES_256_GCM,
        };
        // Both algorithms take 32-byte keys: `new` cannot fail on one.
        let unbound = UnboundKey::new(algorithm, key).expect("a 32-byte key");
        Key {
            cipher,
            key: LessSafeKey::new(unbound),
            raw: *key,
        }
    }

    pub(crate) fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    pub(crate) fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Noise's nonce: 32 zero bits, then the counter little-endian (ChaChaPoly) or big-endian
    /// (AESGCM).
    fn nonce(&self, n: u64) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&match self.cipher {
            Cipher::ChaChaPoly => n.to_le_bytes(),
            Cipher::AesGcm => n.to_be_bytes(),
        });
        Nonce::assume_unique_for_key(nonce)
    }

    /// Encrypts `buf` in place (no associated data, as Noise's transport) and returns the tag.
    pub(crate) fn seal(&self, n: u64, buf: &mut [u8]) -> Result<[u8; TAG_LEN], WireError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(n), Aad::empty(), buf)
            .map_err(|_| WireError::Noise("a frame could not be sealed".into()))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Checks the tag at the end of `message` and decrypts the rest in place: how many bytes of
    /// plaintext it holds. Any tampering fails here.
    pub(crate) fn open(&self, n: u64, message: &mut [u8]) -> Result<usize, WireError> {
        self.key
            .open_in_place(self.nonce(n), Aad::empty(), message)
            .map(|plain| plain.len())
            .map_err(|_| {
                WireError::Noise("a frame did not decrypt (tampered, replayed or reordered)".into())
            })
    }
}
