//! RSA signature verification (RS256/384/512, PS256/384/512) for the pure-wasm
//! path: the public operation `s^e mod n` in Montgomery form over 32-bit limbs
//! (a native `i64.mul` per limb product in wasm; squarings, most of the work,
//! compute each cross product once), then the PKCS #1 v1.5 or PSS
//! encoding check of RFC 8017. The `rsa` crate's general big integers cost about
//! 583 µs per RSA-2048 verification in V8; this costs a fraction of that
//! (`make bench`, in-VM table). Only public data is handled, so nothing here
//! needs to be constant-time.
//!
//! The modulus and exponent come from a key the `rsa` crate already accepted
//! (size and exponent limits, ROCA check at configuration). Agreement with it is
//! tested on Wycheproof's RSA vectors (`crates/cjwt-core/tests/vectors_wycheproof.rs`) and on
//! random signatures (unit tests below).

use crate::keys::algorithm::Algorithm;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A public key prepared for fast verification (computed once per key).
#[derive(Clone)]
pub struct RsaVerifier {
    /// Modulus, little-endian 32-bit limbs.
    n: Vec<u32>,
    /// `-n⁻¹ mod 2³²`.
    n0inv: u32,
    /// `R² mod n`, `R = 2^(32·limbs)`: converts into Montgomery form.
    r2: Vec<u32>,
    /// Public exponent bits, most significant first (leading one included).
    e_bits: Vec<bool>,
    /// Modulus length in bytes (`k`) and bits.
    k: usize,
    mod_bits: usize,
}

impl std::fmt::Debug for RsaVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaVerifier").field("mod_bits", &self.mod_bits).finish_non_exhaustive()
    }
}

/// Big-endian bytes to little-endian limbs, `limbs` long.
fn limbs_from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, b) in bytes.iter().rev().enumerate() {
        if let Some(limb) = out.get_mut(i / 4) {
            *limb |= u32::from(*b) << (8 * (i % 4));
        }
    }
    out
}

/// Little-endian limbs to `k` big-endian bytes (higher bytes dropped).
fn be_from_limbs(limbs: &[u32], k: usize) -> Vec<u8> {
    let mut out = vec![0u8; k];
    for (i, o) in out.iter_mut().rev().enumerate() {
        let limb = limbs.get(i / 4).copied().unwrap_or(0);
        *o = (limb >> (8 * (i % 4))) as u8;
    }
    out
}

/// `a >= b` for equal-length little-endian limbs.
fn ge(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b` (wrapping), equal lengths.
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = u64::from(*x).wrapping_sub(u64::from(*y)).wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
}

impl RsaVerifier {
    /// Prepares a key from its big-endian modulus and exponent; `None` when the
    /// modulus is even or empty, or the exponent is zero or one.
    pub fn new(n_be: &[u8], e_be: &[u8]) -> Option<RsaVerifier> {
        let n_be = n_be.get(n_be.iter().position(|b| *b != 0)?..)?;
        let k = n_be.len();
        let mod_bits = 8 * k - n_be.first()?.leading_zeros() as usize;
        let limbs = k.div_ceil(4);
        let n = limbs_from_be(n_be, limbs);
        let n0 = *n.first()?;
        if n0 & 1 == 0 {
            return None;
        }
        // Newton's iteration doubles the correct low bits: 1 → 2 → … → 32.
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let n0inv = inv.wrapping_neg();
        // R² mod n by doubling 1 modulo n, 2·32·limbs times.
        let mut r2 = vec![0u32; limbs];
        if let Some(first) = r2.first_mut() {
            *first = 1;
        }
        for _ in 0..(64 * limbs) {
            let mut carry = 0u32;
            for limb in r2.iter_mut() {
                let next = *limb >> 31;
                *limb = (*limb << 1) | carry;
                carry = next;
            }
            if carry == 1 || ge(&r2, &n) {
                sub_in_place(&mut r2, &n);
            }
        }
        let e_be = e_be.get(e_be.iter().position(|b| *b != 0)?..)?;
        let e_bits: Vec<bool> =
            e_be.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1 == 1)).skip_while(|bit| !bit).collect();
        if e_bits.len() < 2 {
            return None;
        }
        Some(RsaVerifier { n, n0inv, r2, e_bits, k, mod_bits })
    }

    /// Montgomery product `a·b·R⁻¹ mod n` (CIOS), for `a, b < n`, into `out`.
    /// `t` is scratch space of `limbs + 2` words.
    fn mont_mul(&self, a: &[u32], b: &[u32], t: &mut [u32], out: &mut [u32]) {
        let l = self.n.len();
        t.fill(0);
        let (low, high) = t.split_at_mut(l);
        let [h0, h1] = high else {
            return;
        };
        let (Some((n0, n_rest)), Some(_)) = (self.n.split_first(), low.first()) else {
            return;
        };
        for &bi in b {
            let bi = u64::from(bi);
            // t += a·bi
            let mut c = 0u64;
            for (tj, &aj) in low.iter_mut().zip(a) {
                let x = u64::from(*tj) + u64::from(aj) * bi + c;
                *tj = x as u32;
                c = x >> 32;
            }
            let x = u64::from(*h0) + c;
            *h0 = x as u32;
            *h1 = (x >> 32) as u32;
            // t = (t + m·n) / 2³², with m making the low limb zero: the shift is
            // fused into the loop (each limb is written one place down).
            let Some((first, rest)) = low.split_first_mut() else {
                return;
            };
            let m = u64::from(first.wrapping_mul(self.n0inv));
            let mut c = (u64::from(*first) + m * u64::from(*n0)) >> 32;
            let mut prev = first;
            for (tj, &nj) in rest.iter_mut().zip(n_rest) {
                let x = u64::from(*tj) + m * u64::from(nj) + c;
                *prev = x as u32;
                c = x >> 32;
                prev = tj;
            }
            let x = u64::from(*h0) + c;
            *prev = x as u32;
            *h0 = h1.wrapping_add((x >> 32) as u32);
            *h1 = 0;
        }
        let overflow = *h0 != 0;
        if overflow || ge(low, &self.n) {
            sub_in_place(low, &self.n);
        }
        for (o, x) in out.iter_mut().zip(low.iter()) {
            *o = *x;
        }
    }

    /// Montgomery square `a²·R⁻¹ mod n` for `a < n`, into `out`: the square
    /// computed once per pair of limbs (about `l²/2` products instead of `l²`),
    /// then reduced. `t` is scratch space of `2·limbs + 1` words.
    fn mont_sqr(&self, a: &[u32], t: &mut [u32], out: &mut [u32]) {
        let l = self.n.len();
        t.fill(0);
        // Cross products a[i]·a[j], j > i, at t[i + j]. Row i ends at t[i + l],
        // which no earlier row reached: its final carry is stored, not added.
        for (i, &ai) in a.iter().enumerate() {
            let (Some(row), Some(rest)) = (t.get_mut(2 * i + 1..), a.get(i + 1..)) else {
                break;
            };
            let ai = u64::from(ai);
            let mut c = 0u64;
            let mut cells = row.iter_mut();
            // `rest` first: zip must not take a cell past the last product.
            for (&aj, tk) in rest.iter().zip(&mut cells) {
                let x = u64::from(*tk) + ai * u64::from(aj) + c;
                *tk = x as u32;
                c = x >> 32;
            }
            if let Some(tk) = cells.next() {
                *tk = c as u32;
            }
        }
        // Double, then add the squares a[i]² at t[2i].
        let mut carry = 0u32;
        for limb in t.iter_mut() {
            let next = *limb >> 31;
            *limb = (*limb << 1) | carry;
            carry = next;
        }
        let mut c = 0u64;
        let mut cells = t.iter_mut();
        for &ai in a {
            let sq = u64::from(ai) * u64::from(ai);
            for half in [sq & 0xffff_ffff, sq >> 32] {
                if let Some(tk) = cells.next() {
                    let x = u64::from(*tk) + half + c;
                    *tk = x as u32;
                    c = x >> 32;
                }
            }
        }
        for tk in cells {
            let x = u64::from(*tk) + c;
            *tk = x as u32;
            c = x >> 32;
        }
        // Reduce: for each low limb, add m·n so that it becomes zero.
        for i in 0..l {
            let Some(window) = t.get_mut(i..) else {
                break;
            };
            let m = u64::from(window.first().copied().unwrap_or(0).wrapping_mul(self.n0inv));
            let mut c = 0u64;
            let mut cells = window.iter_mut();
            for (&nj, tk) in self.n.iter().zip(&mut cells) {
                let x = u64::from(*tk) + m * u64::from(nj) + c;
                *tk = x as u32;
                c = x >> 32;
            }
            for tk in cells {
                if c == 0 {
                    break;
                }
                let x = u64::from(*tk) + c;
                *tk = x as u32;
                c = x >> 32;
            }
        }
        let (_, high) = t.split_at_mut(l);
        let (result, top) = high.split_at_mut(l);
        let overflow = top.first().is_some_and(|x| *x != 0);
        if overflow || ge(result, &self.n) {
            sub_in_place(result, &self.n);
        }
        for (o, x) in out.iter_mut().zip(result.iter()) {
            *o = *x;
        }
    }

    /// `s^e mod n` as `k` big-endian bytes; `None` when `s` is not `k` bytes or `s >= n`.
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.k {
            return None;
        }
        let s = limbs_from_be(signature, self.n.len());
        if ge(&s, &self.n) {
            return None;
        }
        let l = self.n.len();
        let mut t = vec![0u32; l + 2];
        let mut base = vec![0u32; l];
        self.mont_mul(&s, &self.r2, &mut t, &mut base);
        let mut acc = base.clone();
        let mut next = vec![0u32; l];
        let mut wide = vec![0u32; 2 * l + 1];
        for bit in self.e_bits.iter().skip(1) {
            self.mont_sqr(&acc, &mut wide, &mut next);
            std::mem::swap(&mut acc, &mut next);
            if *bit {
                self.mont_mul(&acc, &base, &mut t, &mut next);
                std::mem::swap(&mut acc, &mut next);
            }
        }
        let mut one = vec![0u32; l];
        if let Some(first) = one.first_mut() {
            *first = 1;
        }
        self.mont_mul(&acc, &one, &mut t, &mut next);
        Some(be_from_limbs(&next, self.k))
    }

    /// Verifies an RS* or PS* signature over `input`.
    pub fn verify(&self, alg: Algorithm, input: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        match alg {
            Algorithm::RS256 => pkcs1v15_matches(&em, &SHA256_INFO, &Sha256::digest(input)),
            Algorithm::RS384 => pkcs1v15_matches(&em, &SHA384_INFO, &Sha384::digest(input)),
            Algorithm::RS512 => pkcs1v15_matches(&em, &SHA512_INFO, &Sha512::digest(input)),
            Algorithm::PS256 => pss_matches::<Sha256>(&em, self.mod_bits, &Sha256::digest(input)),
            Algorithm::PS384 => pss_matches::<Sha384>(&em, self.mod_bits, &Sha384::digest(input)),
            Algorithm::PS512 => pss_matches::<Sha512>(&em, self.mod_bits, &Sha512::digest(input)),
            _ => false,
        }
    }
}

/// DER `DigestInfo` prefixes (RFC 8017 §9.2, note 1), parameters NULL.
const SHA256_INFO: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];
const SHA384_INFO: [u8; 19] =
    [0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30];
const SHA512_INFO: [u8; 19] =
    [0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40];

/// EMSA-PKCS1-v1_5 (RFC 8017 §9.2): `00 01 FF…FF 00 DigestInfo H`, compared whole.
fn pkcs1v15_matches(em: &[u8], info: &[u8], hash: &[u8]) -> bool {
    let t_len = info.len() + hash.len();
    if em.len() < t_len + 11 {
        return false;
    }
    let mut expected = Vec::with_capacity(em.len());
    expected.extend_from_slice(&[0x00, 0x01]);
    expected.resize(em.len() - t_len - 1, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(info);
    expected.extend_from_slice(hash);
    expected == em
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with MGF1 and salt length = hash length (RFC 7518 §3.5).
fn pss_matches<D: Digest>(em_k: &[u8], mod_bits: usize, m_hash: &[u8]) -> bool {
    let h_len = <D as Digest>::output_size();
    let s_len = h_len;
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    // The public operation gave k bytes; with emLen = k - 1 the first must be zero.
    let Some(em) = em_k.len().checked_sub(em_len).and_then(|skip| {
        let (head, em) = em_k.split_at(skip);
        head.iter().all(|b| *b == 0).then_some(em)
    }) else {
        return false;
    };
    if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
        return false;
    }
    let db_len = em_len - h_len - 1;
    let (masked_db, rest) = em.split_at(db_len);
    let Some(h) = rest.get(..h_len) else {
        return false;
    };
    let unused_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8 >> unused_bits;
    if masked_db.first().is_some_and(|b| b & !top_mask != 0) {
        return false;
    }
    let mut db = mgf1::<D>(h, db_len);
    for (d, m) in db.iter_mut().zip(masked_db) {
        *d ^= m;
    }
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    let zeros = em_len - h_len - s_len - 2;
    let (padding, tail) = db.split_at(zeros);
    if padding.iter().any(|b| *b != 0) || tail.first() != Some(&0x01) {
        return false;
    }
    let Some(salt) = tail.get(1..) else {
        return false;
    };
    let mut hasher = D::new();
    hasher.update([0u8; 8]);
    hasher.update(m_hash);
    hasher.update(salt);
    hasher.finalize()[..] == *h
}

/// MGF1 (RFC 8017 §B.2.1).
fn mgf1<D: Digest>(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + <D as Digest>::output_size());
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut hasher = D::new();
        hasher.update(seed);
        hasher.update(counter.to_be_bytes());
        out.extend_from_slice(&hasher.finalize());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn montgomery_exponentiation_matches_plain_big_integers() {
        // A small odd modulus exercised against u128 arithmetic.
        let n: u64 = 0xd3a5_7c91_e6b3_0001 | 1;
        let v = RsaVerifier::new(&n.to_be_bytes(), &[0x01, 0x00, 0x01]).unwrap();
        let modpow = |b: u64| -> u64 {
            let (mut acc, mut base, mut e) = (1u128, u128::from(b) % u128::from(n), 65537u32);
            while e > 0 {
                if e & 1 == 1 {
                    acc = acc * base % u128::from(n);
                }
                base = base * base % u128::from(n);
                e >>= 1;
            }
            acc as u64
        };
        for s in [2u64, 3, 0x1234_5678_9abc_def0, n - 1, n / 3] {
            let out = v.public_op(&s.to_be_bytes()).unwrap();
            assert_eq!(u64::from_be_bytes(out.try_into().unwrap()), modpow(s), "s = {s:#x}");
        }
        assert!(v.public_op(&n.to_be_bytes()).is_none(), "s >= n is refused");
        assert!(v.public_op(&[1, 2, 3]).is_none(), "wrong length is refused");
    }

    #[test]
    fn montgomery_squaring_equals_multiplying_by_itself() {
        // A 2048-bit odd modulus and values near it, including all-ones limbs (carry chains).
        let mut n = vec![0xffu8; 256];
        n[255] = 0xc5;
        n[0] = 0xd1;
        let v = RsaVerifier::new(&n, &[1, 0, 1]).unwrap();
        let l = v.n.len();
        let mut values: Vec<Vec<u32>> = vec![vec![0; l], vec![1; l]];
        let mut near = v.n.clone();
        near[0] -= 2;
        values.push(near);
        let mut x = 0x9e37_79b9u32;
        values.push(
            (0..l)
                .map(|_| {
                    x = x.wrapping_mul(0x0100_0193) ^ (x >> 7);
                    x
                })
                .collect::<Vec<u32>>(),
        );
        let mut top = v.n.clone();
        top[l - 1] -= 1;
        values.push(top);
        for a in values {
            let a = if ge(&a, &v.n) {
                let mut b = a.clone();
                sub_in_place(&mut b, &v.n);
                b
            } else {
                a
            };
            let (mut t, mut wide) = (vec![0u32; l + 2], vec![0u32; 2 * l + 1]);
            let (mut by_mul, mut by_sqr) = (vec![0u32; l], vec![0u32; l]);
            v.mont_mul(&a, &a, &mut t, &mut by_mul);
            v.mont_sqr(&a, &mut wide, &mut by_sqr);
            assert_eq!(by_sqr, by_mul);
        }
    }

    #[test]
    fn even_moduli_and_trivial_exponents_are_refused() {
        assert!(RsaVerifier::new(&[0x10, 0x00], &[1, 0, 1]).is_none());
        assert!(RsaVerifier::new(&[0x10, 0x01], &[1]).is_none());
        assert!(RsaVerifier::new(&[], &[1, 0, 1]).is_none());
    }
}
