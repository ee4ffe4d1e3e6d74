//! The FFI boundary: every `unsafe` call into libsodium lives in this file.
//!
//! Each wrapper checks lengths through its types (fixed-size arrays) so the
//! pointers handed to C always cover what C reads or writes.

use std::sync::OnceLock;

use libsodium_sys as ffi;

use super::CryptoError;

/// Initialises libsodium once (it picks the fastest implementations for this
/// CPU and opens the OS random source). Cheap after the first call.
pub(super) fn init() -> Result<(), CryptoError> {
    static INIT: OnceLock<bool> = OnceLock::new();
    // SAFETY: sodium_init takes no arguments and is thread-safe; it returns 0
    // on success and 1 when already initialised, -1 on failure.
    let ok = *INIT.get_or_init(|| unsafe { ffi::sodium_init() } >= 0);
    if ok { Ok(()) } else { Err(CryptoError::Init) }
}

/// Panics only if libsodium cannot start at all, which leaves no way to run.
pub(super) fn init_or_panic() {
    if init().is_err() {
        panic!("libsodium failed to initialise; no crypto is possible");
    }
}

/// Fills `buf` from libsodium's OS-backed generator. Meant for the driver
/// (to seed the core's RNG) and for identity creation, never for the sans-IO
/// core, which takes a seeded RNG instead.
pub fn fill_random(buf: &mut [u8]) {
    init_or_panic();
    // SAFETY: the pointer and length describe `buf` exactly.
    unsafe { ffi::randombytes_buf(buf.as_mut_ptr().cast(), buf.len()) }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    init_or_panic();
    // SAFETY: both pointers cover `a.len()` readable bytes.
    unsafe { ffi::sodium_memcmp(a.as_ptr().cast(), b.as_ptr().cast(), a.len()) == 0 }
}

/// X25519 base-point multiplication: the public key of a secret key.
pub(super) fn scalarmult_base(secret: &[u8; 32]) -> [u8; 32] {
    init_or_panic();
    let mut public = [0u8; 32];
    // SAFETY: both buffers are 32 bytes, as crypto_scalarmult_base requires.
    // It only fails for an all-zero result, which a clamped scalar times the
    // base point cannot give.
    unsafe { ffi::crypto_scalarmult_base(public.as_mut_ptr(), secret.as_ptr()) };
    public
}

/// `crypto_box_beforenm`: X25519 then HSalsa20. Fails on low-order keys.
pub(super) fn box_beforenm(public: &[u8; 32], secret: &[u8; 32], out: &mut [u8; 32]) -> Result<(), CryptoError> {
    init()?;
    // SAFETY: all three buffers are 32 bytes.
    let rc = unsafe { ffi::crypto_box_beforenm(out.as_mut_ptr(), public.as_ptr(), secret.as_ptr()) };
    if rc == 0 { Ok(()) } else { Err(CryptoError::LowOrderKey) }
}

/// Encrypts `buf` in place and returns the MAC (`crypto_box_detached_afternm`).
pub(super) fn seal_detached(key: &[u8; 32], nonce: &[u8; 24], buf: &mut [u8]) -> [u8; 16] {
    // A symmetric key (`SharedKey::from_bytes`) may reach here before any
    // other call has initialised libsodium; after the first call this is a
    // single atomic read.
    init_or_panic();
    let mut mac = [0u8; 16];
    let ptr = buf.as_mut_ptr();
    // SAFETY: `ptr` covers `buf.len()` bytes for both reading and writing;
    // libsodium allows the message and ciphertext to be the same buffer. The
    // MAC, nonce and key buffers have the sizes the function requires.
    // It cannot fail for lengths a slice can hold.
    unsafe {
        ffi::crypto_box_detached_afternm(ptr, mac.as_mut_ptr(), ptr, buf.len() as u64, nonce.as_ptr(), key.as_ptr())
    };
    mac
}

/// Verifies `mac` and decrypts `buf` in place (`crypto_box_open_detached_afternm`).
/// On failure `buf` is left unchanged.
pub(super) fn open_detached(
    key: &[u8; 32],
    nonce: &[u8; 24],
    buf: &mut [u8],
    mac: &[u8; 16],
) -> Result<(), CryptoError> {
    init()?;
    let ptr = buf.as_mut_ptr();
    // SAFETY: as in `seal_detached`; libsodium verifies the MAC before it
    // writes anything, and supports in-place decryption.
    let rc = unsafe {
        ffi::crypto_box_open_detached_afternm(ptr, ptr, mac.as_ptr(), buf.len() as u64, nonce.as_ptr(), key.as_ptr())
    };
    if rc == 0 { Ok(()) } else { Err(CryptoError::Decrypt) }
}

pub(super) fn sha256(data: &[u8]) -> [u8; 32] {
    init_or_panic();
    let mut out = [0u8; 32];
    // SAFETY: `out` is crypto_hash_sha256_BYTES long; `data` is readable.
    unsafe { ffi::crypto_hash_sha256(out.as_mut_ptr(), data.as_ptr(), data.len() as u64) };
    out
}

pub(super) fn sha512(data: &[u8]) -> [u8; 64] {
    init_or_panic();
    let mut out = [0u8; 64];
    // SAFETY: `out` is crypto_hash_sha512_BYTES long; `data` is readable.
    unsafe { ffi::crypto_hash_sha512(out.as_mut_ptr(), data.as_ptr(), data.len() as u64) };
    out
}

/// A cryptographic RNG backed by libsodium's OS-seeded generator. The driver
/// and the identity store use it; the sans-IO core takes whatever RNG it is
/// handed (a seeded one in the simulator).
#[derive(Debug, Default, Clone, Copy)]
pub struct SodiumRng;

impl rand_core::TryRng for SodiumRng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        fill_random(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        fill_random(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        fill_random(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for SodiumRng {}

/// Whether libsodium runs AEGIS-256 on AES instructions here (AES-NI with
/// AVX on x86-64, the crypto extensions on ARM), as its own choice of
/// implementation does. Without them it falls back to portable code that
/// is many times slower.
pub(super) fn has_aes_hardware() -> bool {
    init_or_panic();
    // SAFETY: these only read the CPU features sodium_init recorded.
    unsafe {
        ffi::sodium_runtime_has_armcrypto() == 1
            || (ffi::sodium_runtime_has_aesni() == 1 && ffi::sodium_runtime_has_avx() == 1)
    }
}

/// Keyed BLAKE2b with a 32-byte output (`crypto_generichash`).
pub(super) fn blake2b_256_keyed(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    init_or_panic();
    let mut out = [0u8; 32];
    // SAFETY: `out` is 32 bytes (within crypto_generichash_BYTES_MIN..=MAX),
    // the key 32 bytes (within KEYBYTES_MIN..=MAX); `data` is readable. It
    // cannot fail for these lengths.
    unsafe {
        ffi::crypto_generichash(out.as_mut_ptr(), out.len(), data.as_ptr(), data.len() as u64, key.as_ptr(), key.len())
    };
    out
}

/// AEGIS-256: encrypts `buf` in place, authenticating `ad` too, and returns
/// the 32-byte tag (`crypto_aead_aegis256_encrypt_detached`).
pub(super) fn aegis256_seal(key: &[u8; 32], nonce: &[u8; 32], ad: &[u8], buf: &mut [u8]) -> [u8; 32] {
    init_or_panic();
    let mut tag = [0u8; 32];
    let ptr = buf.as_mut_ptr();
    // SAFETY: `ptr` covers `buf.len()` bytes for reading and writing; the
    // implementation reads each 16-byte block before it writes the same
    // block, so input and output may be one buffer. The tag buffer is
    // crypto_aead_aegis256_ABYTES (32) long, nonce and key are 32 bytes as
    // required, `ad` is readable. Lengths a slice holds are far below the
    // limit (MESSAGEBYTES_MAX), so it cannot fail.
    unsafe {
        ffi::crypto_aead_aegis256_encrypt_detached(
            ptr,
            tag.as_mut_ptr(),
            std::ptr::null_mut(),
            ptr,
            buf.len() as u64,
            ad.as_ptr(),
            ad.len() as u64,
            std::ptr::null(),
            nonce.as_ptr(),
            key.as_ptr(),
        )
    };
    tag
}

/// AEGIS-256: verifies `tag` over `buf` and `ad` and decrypts `buf` in
/// place (`crypto_aead_aegis256_decrypt_detached`). On failure libsodium
/// zeroes `buf` (the check comes after decryption): never a plaintext.
pub(super) fn aegis256_open(
    key: &[u8; 32],
    nonce: &[u8; 32],
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 32],
) -> Result<(), CryptoError> {
    init()?;
    let ptr = buf.as_mut_ptr();
    // SAFETY: as in `aegis256_seal`; the tag is 32 bytes, as the function reads.
    let rc = unsafe {
        ffi::crypto_aead_aegis256_decrypt_detached(
            ptr,
            std::ptr::null_mut(),
            ptr,
            buf.len() as u64,
            tag.as_ptr(),
            ad.as_ptr(),
            ad.len() as u64,
            nonce.as_ptr(),
            key.as_ptr(),
        )
    };
    if rc == 0 { Ok(()) } else { Err(CryptoError::Decrypt) }
}
