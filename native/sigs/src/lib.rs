//! Batch ed25519 verification for the node's write path.
//!
//! The node checks every command's signature before it proposes it: one by one through libsodium that
//! was ~37 µs a command, the largest cost of a transfer. A batch shares the expensive part (one
//! multi-scalar multiplication for all of its signatures) and costs less than half that at 100.
//!
//! The rules are the cofactored ones of ZIP-215 (S must be canonical; A and R may be any encoding
//! that decodes; [8]([S]B - R - [k]A) = 0), under which a batch and each signature alone agree, so
//! a command's answer never depends on what it was batched with. On top of them a key of small
//! order is refused: anyone can sign for it. The curve arithmetic is curve25519-dalek's (it picks
//! its AVX2 backend at run time); ed25519-consensus implements the same rules but decodes each key
//! again inside, which made the weak-key check cost 4 µs a signature more.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use pyo3::prelude::*;
use sha2::{Digest, Sha512};

/// One command's (public key, signature, signed bytes).
type Item = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A signature's parts, decoded: the key A, the commitment R, the response S and k = H(R || A || M).
struct Parts {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// None when the key or the signature has the wrong length or does not decode, S is not canonical,
/// or the key has small order.
fn decode((key, sig, message): &Item) -> Option<Parts> {
    let key: [u8; 32] = key.as_slice().try_into().ok()?;
    let sig: [u8; 64] = sig.as_slice().try_into().ok()?;
    let (r_bytes, s_bytes) = sig.split_at(32);
    let a = CompressedEdwardsY(key).decompress()?;
    if a.is_small_order() {
        return None;
    }
    let r = CompressedEdwardsY(r_bytes.try_into().ok()?).decompress()?;
    let s = Option::from(Scalar::from_canonical_bytes(s_bytes.try_into().ok()?))?;
    let k = Scalar::from_hash(Sha512::new().chain_update(r_bytes).chain_update(key).chain_update(message));
    Some(Parts { a, r, s, k })
}

fn verifies_alone(p: &Parts) -> bool {
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-p.a, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Whether all verify: sum_i z_i ([S_i]B - R_i - [k_i]A_i), times the cofactor, is the identity for
/// random 128-bit z_i, which holds for invalid signatures with probability 2^-128 at most.
fn verify_together<'a>(parts: impl Iterator<Item = &'a Option<Parts>>) -> bool {
    let parts: Option<Vec<&Parts>> = parts.map(Option::as_ref).collect();
    let Some(parts) = parts else { return false };
    let mut random = vec![0u8; 16 * parts.len()];
    getrandom::getrandom(&mut random).expect("the operating system's random source");
    let mut scalars = Vec::with_capacity(2 * parts.len() + 1);
    let mut points = Vec::with_capacity(2 * parts.len() + 1);
    let mut b = Scalar::ZERO;
    for (p, z) in parts.iter().zip(random.chunks_exact(16)) {
        let z = Scalar::from(u128::from_le_bytes(z.try_into().expect("16 bytes")));
        b += z * p.s;
        scalars.push(-z);
        points.push(p.r);
        scalars.push(-(z * p.k));
        points.push(p.a);
    }
    scalars.push(b);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).mul_by_cofactor().is_identity()
}

/// One flag per item of each group: true when its signature is valid for its key over its bytes.
///
/// Everything is checked as one batch first. When that fails, each group is checked as a batch of
/// its own, and only the items of a failing group one by one: a forged signature costs its own
/// group the slow path, not everybody it was batched with. Runs without the GIL.
#[pyfunction]
fn verify_groups(py: Python<'_>, groups: Vec<Vec<Item>>) -> Vec<Vec<bool>> {
    py.allow_threads(|| {
        let decoded: Vec<Vec<Option<Parts>>> = groups.iter().map(|g| g.iter().map(decode).collect()).collect();
        if groups.len() > 1 && verify_together(decoded.iter().flatten()) {
            return groups.iter().map(|g| vec![true; g.len()]).collect();
        }
        decoded
            .iter()
            .map(|group| {
                if verify_together(group.iter()) {
                    vec![true; group.len()]
                } else {
                    group.iter().map(|p| p.as_ref().is_some_and(verifies_alone)).collect()
                }
            })
            .collect()
    })
}

#[pymodule]
fn walletcluster_sigs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_groups, m)?)
}
