//! The transport ciphers of the agent's wire, sealing and opening frames in place: AES-256-GCM
//! where both ends have AES instructions, ChaCha20-Poly1305 otherwise (Noise's AESGCM and
//! ChaChaPoly transport, nonce layout included).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use chacha20poly1305::ChaCha20Poly1305;

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
pub(crate) enum Key {
    ChaChaPoly(Box<ChaCha20Poly1305>),
    AesGcm(Box<Aes256Gcm>),
}

impl Key {
    pub(crate) fn new(cipher: Cipher, key: &[u8; 32]) -> Key {
        match cipher {
            Cipher::ChaChaPoly => Key::ChaChaPoly(Box::new(ChaCha20Poly1305::new(key.into()))),
            Cipher::AesGcm => Key::AesGcm(Box::new(Aes256Gcm::new(key.into()))),
        }
    }

    pub(crate) fn cipher(&self) -> Cipher {
        match self {
            Key::ChaChaPoly(_) => Cipher::ChaChaPoly,
            Key::AesGcm(_) => Cipher::AesGcm,
        }
    }

    /// Noise's nonce: 32 zero bits, then the counter little-endian (ChaChaPoly) or big-endian
    /// (AESGCM).
    fn nonce(&self, n: u64) -> Nonce<aes_gcm::aead::consts::U12> {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&match self {
            Key::ChaChaPoly(_) => n.to_le_bytes(),
            Key::AesGcm(_) => n.to_be_bytes(),
        });
        nonce.into()
    }

    /// Encrypts `buf` in place (no associated data, as Noise's transport) and returns the tag.
    pub(crate) fn seal(&self, n: u64, buf: &mut [u8]) -> Result<[u8; TAG_LEN], WireError> {
        let nonce = self.nonce(n);
        let tag = match self {
            Key::ChaChaPoly(k) => k.encrypt_in_place_detached(&nonce, &[], buf),
            Key::AesGcm(k) => k.encrypt_in_place_detached(&nonce, &[], buf),
        }
        .map_err(|_| WireError::Noise("a frame could not be sealed".into()))?;
        Ok(tag.into())
    }

    /// Checks `tag` and decrypts `buf` in place; any tampering fails here.
    pub(crate) fn open(&self, n: u64, buf: &mut [u8], tag: &[u8]) -> Result<(), WireError> {
        let nonce = self.nonce(n);
        let tag = Tag::from_slice(tag);
        match self {
            Key::ChaChaPoly(k) => k.decrypt_in_place_detached(&nonce, &[], buf, tag),
            Key::AesGcm(k) => k.decrypt_in_place_detached(&nonce, &[], buf, tag),
        }
        .map_err(|_| {
            WireError::Noise("a frame did not decrypt (tampered, replayed or reordered)".into())
        })
    }
}
