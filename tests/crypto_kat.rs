//! Known-answer tests: the crypto facade (`tuntox::crypto`) against Debian's
//! libsodium, reached through a small C program (`tests/kat/sodium_kat.c`)
//! that shares no code with our Rust wrapper.
//!
//! Inputs come from a seeded ChaCha RNG, so a failure names a case that
//! reruns identically. What is checked:
//! - public keys from secret keys (`crypto_scalarmult_base`);
//! - precomputed keys, computed from both ends (`crypto_box_beforenm`);
//! - sealed bytes: our `seal` equals libsodium's `crypto_box_easy_afternm`
//!   and the one-shot `crypto_box_easy`, and the in-place detached layout is
//!   the same bytes split as `[MAC 16][ciphertext]`;
//! - each side opens what the other sealed, and both refuse tampered,
//!   truncated or wrongly-nonced packets;
//! - SHA-256 and SHA-512;
//! - the small-order Curve25519 points, refused by both as peer keys.
//!
//! Message lengths run over 0..1500 and always include the edges 0, 1,
//! 15-17 (around the MAC length), 1373 and 1400 (net_crypto's largest data
//! payload and packet).
//!
//! Needs gcc, pkg-config and libsodium-dev: without them the tests fail
//! with a message naming what to install; they never skip.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tuntox::crypto::{
    CryptoError, KeyPair, MAC_LEN, NONCE_LEN, Nonce, PublicKey, SecretKey, SharedKey, sha256, sha512,
};

/// Cases per randomised test.
const CASES: usize = 300;

/// Lengths every message test covers before the random ones.
const EDGE_LENGTHS: &[usize] =
    &[0, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 1024, 1372, 1373, 1374, 1400, 1499];

/// Longest random message (exclusive).
const MAX_LEN: usize = 1500;

/// The small-order Curve25519 points (as u-coordinates), each also with the
/// unused top bit set: X25519 ignores that bit, so both encodings name the
/// same point. A shared key computed from any of them is all zeros.
fn low_order_points() -> Vec<[u8; 32]> {
    let mut base: Vec<[u8; 32]> = Vec::new();
    // 0 (order 4) and 1 (order 1).
    base.push([0; 32]);
    let mut one = [0; 32];
    one[0] = 1;
    base.push(one);
    // The two points of order 8.
    base.push(hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"));
    base.push(hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"));
    // p - 1 (order 2), p (= 0) and p + 1 (= 1), p = 2^255 - 19, little-endian.
    for low in [0xec, 0xed, 0xee] {
        let mut p = [0xff; 32];
        p[0] = low;
        p[31] = 0x7f;
        base.push(p);
    }
    let high: Vec<[u8; 32]> = base
        .iter()
        .map(|point| {
            let mut point = *point;
            point[31] |= 0x80;
            point
        })
        .collect();
    base.extend(high);
    base
}

// ---------------------------------------------------------------------------
// The reference program.

/// A running `sodium_kat`, asked one command at a time.
struct Sodium {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Sodium {
    fn start() -> Self {
        let exe = support::cbuild::build_c_program("kat/sodium_kat.c", &["libsodium"]);
        let mut child = Command::new(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self { child, stdin: Some(stdin), stdout }
    }

    /// Runs `cmd` with hex-encoded `args`; `None` when libsodium said "error".
    fn call(&mut self, cmd: &str, args: &[&[u8]]) -> Option<Vec<u8>> {
        let mut line = cmd.to_owned();
        for arg in args {
            line.push(' ');
            line.push_str(&hex(arg));
        }
        line.push('\n');
        let stdin = self.stdin.as_mut().expect("stdin open until drop");
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("sodium_kat stopped reading ({e}) at: {cmd}"));
        let mut answer = String::new();
        let read =
            self.stdout.read_line(&mut answer).unwrap_or_else(|e| panic!("reading sodium_kat's answer to {cmd}: {e}"));
        assert!(read > 0, "sodium_kat exited without answering {cmd}");
        match answer.trim_end() {
            "error" => None,
            hex_answer => Some(unhex(hex_answer)),
        }
    }

    /// Like [`Sodium::call`], for commands libsodium must accept.
    fn must(&mut self, cmd: &str, args: &[&[u8]]) -> Vec<u8> {
        self.call(cmd, args).unwrap_or_else(|| panic!("libsodium refused {cmd} on valid input"))
    }
}

impl Drop for Sodium {
    fn drop(&mut self) {
        // Closing stdin ends the program's read loop.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".to_owned();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    if text == "-" {
        return Vec::new();
    }
    assert!(text.len() % 2 == 0, "odd-length hex from sodium_kat: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16).unwrap_or_else(|e| panic!("bad hex from sodium_kat ({e}): {text}"))
        })
        .collect()
}

fn hex32(text: &str) -> [u8; 32] {
    unhex(text).try_into().expect("32 bytes of hex")
}

fn hex24(text: &str) -> [u8; 24] {
    unhex(text).try_into().expect("24 bytes of hex")
}

fn array<const N: usize>(rng: &mut ChaCha20Rng) -> [u8; N] {
    let mut bytes = [0; N];
    rng.fill_bytes(&mut bytes);
    bytes
}

fn bytes(rng: &mut ChaCha20Rng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

fn below(rng: &mut ChaCha20Rng, bound: usize) -> usize {
    (rng.next_u64() % bound as u64) as usize
}

/// `count` message lengths: the edge lengths, then random ones below 1500.
fn lengths(rng: &mut ChaCha20Rng, count: usize) -> Vec<usize> {
    let mut lengths = EDGE_LENGTHS.to_vec();
    while lengths.len() < count {
        lengths.push(below(rng, MAX_LEN));
    }
    lengths
}

fn nonce(rng: &mut ChaCha20Rng) -> Nonce {
    Nonce::from_bytes(array::<NONCE_LEN>(rng))
}

/// A shared key and the same key's bytes as libsodium computed them: either
/// precomputed from two fresh key pairs or a random symmetric key (as
/// c-toxcore's cookie key is).
struct Keyed {
    ours: SharedKey,
    bytes: [u8; 32],
    what: &'static str,
}

fn keyed(rng: &mut ChaCha20Rng, sodium: &mut Sodium, case: usize) -> Keyed {
    if case % 4 == 3 {
        let bytes = array::<32>(rng);
        return Keyed { ours: SharedKey::from_bytes(bytes), bytes, what: "symmetric key" };
    }
    let a = KeyPair::generate(rng);
    let b = KeyPair::generate(rng);
    let ours = SharedKey::precompute(b.public(), a.secret()).expect("random keys are not low order");
    let bytes = sodium
        .must("beforenm", &[b.public().as_bytes(), a.secret().as_bytes()])
        .try_into()
        .expect("beforenm gives 32 bytes");
    Keyed { ours, bytes, what: "precomputed key" }
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn public_keys_match_scalarmult_base() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5CA1A2);
    let mut sodium = Sodium::start();
    let mut secrets: Vec<[u8; 32]> = vec![[0; 32], [0xff; 32], [1; 32]];
    while secrets.len() < CASES {
        secrets.push(array(&mut rng));
    }
    for (case, secret) in secrets.iter().enumerate() {
        let ours = SecretKey::from_bytes(*secret).public_key();
        let theirs = sodium.must("scalarmult_base", &[secret]);
        assert_eq!(hex(ours.as_bytes()), hex(&theirs), "case {case}: public key of secret {}", hex(secret));

        // Clamping: the three low bits and the top bit of the scalar are
        // ignored, bit 254 is forced on. Both libraries must agree on that.
        let mut unclamped = *secret;
        unclamped[0] ^= 0x07;
        unclamped[31] ^= 0xc0;
        let theirs_unclamped = sodium.must("scalarmult_base", &[&unclamped]);
        assert_eq!(hex(theirs_unclamped.as_slice()), hex(&theirs), "case {case}: libsodium clamps");
        assert_eq!(
            SecretKey::from_bytes(unclamped).public_key(),
            ours,
            "case {case}: our public key ignores the clamped bits"
        );
    }
}

#[test]
fn published_nacl_vector() {
    // The key pairs and first precomputed key of NaCl's tests (box.c,
    // box2.c), the X25519 pair also published in RFC 7748 §6.1.
    let alice_sk = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let alice_pk = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let bob_sk = hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let bob_pk = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let first_key = hex32("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389");

    let mut sodium = Sodium::start();
    assert_eq!(sodium.must("scalarmult_base", &[&alice_sk]), alice_pk);
    assert_eq!(sodium.must("scalarmult_base", &[&bob_sk]), bob_pk);
    assert_eq!(sodium.must("beforenm", &[&bob_pk, &alice_sk]), first_key);
    assert_eq!(sodium.must("beforenm", &[&alice_pk, &bob_sk]), first_key);

    let alice = KeyPair::from_secret(SecretKey::from_bytes(alice_sk));
    let bob = KeyPair::from_secret(SecretKey::from_bytes(bob_sk));
    assert_eq!(alice.public().as_bytes(), &alice_pk);
    assert_eq!(bob.public().as_bytes(), &bob_pk);

    // SharedKey keeps its bytes to itself, so compare keys by what they seal.
    let nonce = Nonce::from_bytes(hex24("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37"));
    let probe = b"the same key seals the same bytes";
    let expected = SharedKey::from_bytes(first_key).seal(&nonce, probe);
    for (their_pk, our_sk, who) in [(bob.public(), alice.secret(), "alice"), (alice.public(), bob.secret(), "bob")] {
        let ours = SharedKey::precompute(their_pk, our_sk).unwrap();
        assert_eq!(ours.seal(&nonce, probe), expected, "{who}'s precomputed key");
    }
    assert_eq!(sodium.must("easy_afternm", &[&first_key, nonce.as_bytes(), probe]), expected);
}

#[test]
fn precomputed_keys_match_beforenm_both_ways() {
    let mut rng = ChaCha20Rng::seed_from_u64(0xBEF0_12E4);
    let mut sodium = Sodium::start();
    for case in 0..CASES {
        let a = KeyPair::generate(&mut rng);
        let b = KeyPair::generate(&mut rng);
        let theirs_ab = sodium.must("beforenm", &[b.public().as_bytes(), a.secret().as_bytes()]);
        let theirs_ba = sodium.must("beforenm", &[a.public().as_bytes(), b.secret().as_bytes()]);
        assert_eq!(hex(&theirs_ab), hex(&theirs_ba), "case {case}: libsodium's two ends agree");

        let ours_ab = SharedKey::precompute(b.public(), a.secret())
            .unwrap_or_else(|e| panic!("case {case}: precompute a->b: {e}"));
        let ours_ba = SharedKey::precompute(a.public(), b.secret())
            .unwrap_or_else(|e| panic!("case {case}: precompute b->a: {e}"));

        // Our keys never show their bytes: compare them by a probe sealed
        // under libsodium's key.
        let nonce = nonce(&mut rng);
        let probe = bytes(&mut rng, 32);
        let expected = sodium.must("easy_afternm", &[&theirs_ab, nonce.as_bytes(), &probe]);
        for (ours, dir) in [(&ours_ab, "a->b"), (&ours_ba, "b->a")] {
            assert_eq!(
                hex(&ours.seal(&nonce, &probe)),
                hex(&expected),
                "case {case}: our {dir} precomputed key differs from crypto_box_beforenm"
            );
        }
    }
}

#[test]
fn sealing_matches_easy_afternm_and_box_easy() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5EA1);
    let mut sodium = Sodium::start();
    for (case, len) in lengths(&mut rng, CASES).into_iter().enumerate() {
        let a = KeyPair::generate(&mut rng);
        let b = KeyPair::generate(&mut rng);
        let key = SharedKey::precompute(b.public(), a.secret()).unwrap();
        let key_bytes = sodium.must("beforenm", &[b.public().as_bytes(), a.secret().as_bytes()]);
        let nonce = nonce(&mut rng);
        let plain = bytes(&mut rng, len);
        let ctx = format!("case {case}, {len}-byte message");

        let ours = key.seal(&nonce, &plain);
        assert_eq!(ours.len(), len + MAC_LEN, "{ctx}: sealed length");
        let afternm = sodium.must("easy_afternm", &[&key_bytes, nonce.as_bytes(), &plain]);
        assert_eq!(hex(&ours), hex(&afternm), "{ctx}: seal vs crypto_box_easy_afternm");
        let one_shot =
            sodium.must("box_easy", &[b.public().as_bytes(), a.secret().as_bytes(), nonce.as_bytes(), &plain]);
        assert_eq!(hex(&afternm), hex(&one_shot), "{ctx}: beforenm + easy_afternm vs crypto_box_easy");

        // The in-place detached path gives the same bytes, split.
        let mut body = plain.clone();
        let mac = key.seal_in_place_detached(&nonce, &mut body);
        assert_eq!(hex(&mac), hex(&ours[..MAC_LEN]), "{ctx}: detached MAC");
        assert_eq!(hex(&body), hex(&ours[MAC_LEN..]), "{ctx}: in-place ciphertext");

        // seal_into appends after whatever the buffer holds (a packet header).
        let header_len = below(&mut rng, 60);
        let header = bytes(&mut rng, header_len);
        let mut packet = header.clone();
        key.seal_into(&nonce, &plain, &mut packet);
        assert_eq!(&packet[..header.len()], &header[..], "{ctx}: header kept");
        assert_eq!(hex(&packet[header.len()..]), hex(&ours), "{ctx}: seal_into");

        // A symmetric key (the cookie case) seals as libsodium does too.
        let symmetric = array::<32>(&mut rng);
        assert_eq!(
            hex(&SharedKey::from_bytes(symmetric).seal(&nonce, &plain)),
            hex(&sodium.must("easy_afternm", &[&symmetric, nonce.as_bytes(), &plain])),
            "{ctx}: symmetric key"
        );
    }
}

#[test]
fn each_side_opens_the_other_and_refuses_tampering() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x0BE2);
    let mut sodium = Sodium::start();
    for (case, len) in lengths(&mut rng, CASES).into_iter().enumerate() {
        let Keyed { ours: key, bytes: key_bytes, what } = keyed(&mut rng, &mut sodium, case);
        let nonce = nonce(&mut rng);
        let plain = bytes(&mut rng, len);
        let ctx = format!("case {case}, {what}, {len}-byte message");

        // We open what libsodium sealed, by every path.
        let theirs = sodium.must("easy_afternm", &[&key_bytes, nonce.as_bytes(), &plain]);
        let opened = key.open(&nonce, &theirs).unwrap_or_else(|e| panic!("{ctx}: open of libsodium's packet: {e}"));
        assert_eq!(hex(&opened), hex(&plain), "{ctx}: open");
        let mut buf = theirs.clone();
        let opened = key
            .open_in_place(&nonce, &mut buf)
            .unwrap_or_else(|e| panic!("{ctx}: open_in_place of libsodium's packet: {e}"));
        assert_eq!(hex(opened), hex(&plain), "{ctx}: open_in_place");
        let mac: [u8; MAC_LEN] = theirs[..MAC_LEN].try_into().unwrap();
        let mut body = theirs[MAC_LEN..].to_vec();
        key.open_in_place_detached(&nonce, &mut body, &mac)
            .unwrap_or_else(|e| panic!("{ctx}: open_in_place_detached: {e}"));
        assert_eq!(hex(&body), hex(&plain), "{ctx}: open_in_place_detached");

        // libsodium opens what we sealed, in place and detached.
        let mut body = plain.clone();
        let mac = key.seal_in_place_detached(&nonce, &mut body);
        let ours = [&mac[..], &body[..]].concat();
        let reopened = sodium.call("open_easy_afternm", &[&key_bytes, nonce.as_bytes(), &ours]);
        assert_eq!(reopened.as_deref().map(hex), Some(hex(&plain)), "{ctx}: libsodium's open of our packet");

        // One flipped bit, anywhere (MAC or ciphertext): both refuse, and a
        // failed open in place leaves the buffer alone.
        let mut tampered = ours.clone();
        let bit = below(&mut rng, tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        let ctx_bit = format!("{ctx}, bit {bit} flipped");
        assert_eq!(key.open(&nonce, &tampered), Err(CryptoError::Decrypt), "{ctx_bit}: we must refuse");
        assert_eq!(
            sodium.call("open_easy_afternm", &[&key_bytes, nonce.as_bytes(), &tampered]),
            None,
            "{ctx_bit}: libsodium must refuse"
        );
        let mut buf = tampered.clone();
        assert!(key.open_in_place(&nonce, &mut buf).is_err());
        assert_eq!(buf, tampered, "{ctx_bit}: failed open changed the buffer");

        // The next nonce, as a sender's counter would give it, does not open.
        let mut next = nonce;
        next.increment();
        assert_eq!(key.open(&next, &ours), Err(CryptoError::Decrypt), "{ctx}: wrong nonce");
        assert_eq!(
            sodium.call("open_easy_afternm", &[&key_bytes, next.as_bytes(), &ours]),
            None,
            "{ctx}: libsodium, wrong nonce"
        );

        // Shorter than a MAC: refused up front by both.
        let cut = below(&mut rng, MAC_LEN);
        assert_eq!(key.open(&nonce, &ours[..cut]), Err(CryptoError::TooShort), "{ctx}: {cut} bytes");
        assert_eq!(
            sodium.call("open_easy_afternm", &[&key_bytes, nonce.as_bytes(), &ours[..cut]]),
            None,
            "{ctx}: libsodium, {cut} bytes"
        );
    }
}

#[test]
fn hashes_match_libsodium() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5A2);
    let mut sodium = Sodium::start();
    for (case, len) in lengths(&mut rng, CASES).into_iter().enumerate() {
        let data = bytes(&mut rng, len);
        assert_eq!(hex(&sha256(&data)), hex(&sodium.must("sha256", &[&data])), "case {case}: SHA-256 of {len} bytes");
        assert_eq!(hex(&sha512(&data)), hex(&sodium.must("sha512", &[&data])), "case {case}: SHA-512 of {len} bytes");
    }
}

#[test]
fn low_order_public_keys_are_refused_by_both() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x10_0DE2);
    let mut sodium = Sodium::start();
    let points = low_order_points();
    assert_eq!(points.len(), 14);

    let mut secrets = vec![SecretKey::from_bytes([0; 32]), SecretKey::from_bytes([0xff; 32])];
    secrets.extend((0..6).map(|_| SecretKey::generate(&mut rng)));

    // A control: the same secrets with an ordinary peer key work for both,
    // so an "error" below is about the key, not a broken oracle.
    let peer = KeyPair::generate(&mut rng);
    for secret in &secrets {
        assert!(SharedKey::precompute(peer.public(), secret).is_ok());
        sodium.must("beforenm", &[peer.public().as_bytes(), secret.as_bytes()]);
    }

    for point in &points {
        for (i, secret) in secrets.iter().enumerate() {
            let ctx = format!("low-order key {} with secret #{i}", hex(point));
            assert_eq!(
                SharedKey::precompute(&PublicKey::from_bytes(*point), secret).map(|_| ()),
                Err(CryptoError::LowOrderKey),
                "{ctx}: SharedKey::precompute must refuse it"
            );
            assert_eq!(
                sodium.call("beforenm", &[point, secret.as_bytes()]).map(|k| hex(&k)),
                None,
                "{ctx}: libsodium's crypto_box_beforenm must refuse it"
            );
        }
    }
}

#[test]
fn oracle_answers_error_to_malformed_commands() {
    // The harness itself: a command libsodium never ran must not read as a
    // result, so malformed input gives "error" rather than some output.
    let mut sodium = Sodium::start();
    assert_eq!(sodium.call("no_such_command", &[b"x"]), None);
    assert_eq!(sodium.call("sha256", &[]), None);
    assert_eq!(sodium.call("scalarmult_base", &[&[1; 31]]), None);
    assert_eq!(sodium.call("beforenm", &[&[9; 32]]), None);
    assert_eq!(sodium.call("open_easy_afternm", &[&[0; 32], &[0; 24], &[]]), None);
    // And it still answers afterwards.
    assert_eq!(sodium.must("sha256", &[b"abc"]), sha256(b"abc"));
}
