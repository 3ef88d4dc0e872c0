//! The Merkle tree of RFC 6962 / RFC 9162 §2.1: hashing with domain separation, an
//! append-only compact range (the "right frontier") for O(log n) appends, and
//! inclusion and consistency proofs with their verification algorithms.

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// A SHA-256 hash: a leaf hash, an interior node or a tree head.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Reads a hash from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        bytes.try_into().ok().map(Hash)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses lower- or upper-case hex.
    pub fn from_hex(text: &str) -> Option<Hash> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text, &mut hash).ok()?;
        Some(Hash(hash))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, so that hashes read from a large document are not each
        // copied into a String first (a lineage bundle holds millions).
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Hash;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a SHA-256 hash as 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Hash, E> {
                Hash::from_hex(text).ok_or_else(|| E::custom("expected 64 hex digits"))
            }
        }
        d.deserialize_str(HexVisitor)
    }
}

/// The hash of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Hash(sha256(&[b""]))
}

/// Leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash(sha256(&[&[0x00], data]))
}

/// Interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash(sha256(&[&[0x01], &left.0, &right.0]))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let out = ctx.finish();
    let mut hash = [0u8; 32];
    hash.copy_from_slice(out.as_ref());
    hash
}

/// The right frontier of a tree of `size` leaves: the roots of the perfect subtrees
/// that the binary decomposition of `size` splits it into, largest (leftmost) first.
/// It is all an appender needs to keep: one hash per set bit of `size`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds a frontier from its stored parts; `None` if the number of nodes does
    /// not match the number of set bits in `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Frontier> {
        (nodes.len() == size.count_ones() as usize).then_some(Frontier { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, leftmost first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// The nodes concatenated, as stored (32 bytes each).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes.iter().flat_map(|h| h.0).collect()
    }

    /// Parses [`Frontier::to_bytes`] output for a tree of `size` leaves.
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Option<Frontier> {
        if !bytes.len().is_multiple_of(32) {
            return None;
        }
        let nodes = bytes
            .chunks_exact(32)
            .map(|c| Hash::from_slice(c).expect("32-byte chunk"))
            .collect();
        Frontier::from_parts(size, nodes)
    }

    /// Appends one leaf hash in O(log n).
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            let left = self.nodes.pop().expect("one node per set bit");
            hash = node_hash(&left, &hash);
            n >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// The tree head (Merkle tree hash) of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]) over leaf hashes, computed from scratch.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index or sizes are outside the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof has the wrong number of hashes for the positions it claims.
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    /// The recomputed root differs from the one claimed.
    #[error(
        "the proof does not lead to the expected root hash: recomputed {recomputed}, expected {expected}"
    )]
    RootMismatch {
        /// What the proof leads to.
        recomputed: Hash,
        /// What was claimed.
        expected: Hash,
    },
}

/// PATH(m, D[n]) of RFC 9162 §2.1.3.1: the audit path of leaf `index`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let n = leaves.len() as u64;
    if index >= n {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {n} leaves"
        )));
    }
    let mut proof = Vec::new();
    path(index as usize, leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root_of(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root_of(&leaves[..k]));
    }
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is at `index` in the tree of `size` leaves
/// whose head is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {size} leaves"
        )));
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch {
            recomputed: r,
            expected: *root,
        });
    }
    Ok(())
}

/// PROOF(m, D[n]) of RFC 9162 §2.1.4.1: proves that the first `old_size` leaves of
/// `leaves` form the earlier tree. Empty when `old_size` is 0 or the whole tree.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let n = leaves.len() as u64;
    if old_size > n {
        return Err(ProofError::OutOfRange(format!(
            "a tree of {old_size} leaves is not a prefix of a tree of {n}"
        )));
    }
    let mut proof = Vec::new();
    if old_size > 0 && old_size < n {
        subproof(old_size as usize, leaves, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root_of(leaves));
        }
        return;
    }
    let k = split_point(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root_of(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root_of(&leaves[..k]));
    }
}

/// RFC 9162 §2.1.4.2: checks that the tree of `old_size` leaves with head `old_root`
/// is a prefix of the tree of `new_size` leaves with head `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "the old tree ({old_size} leaves) is larger than the new one ({new_size})"
        )));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        if old_root != new_root {
            return Err(ProofError::RootMismatch {
                recomputed: *old_root,
                expected: *new_root,
            });
        }
        return Ok(());
    }
    if old_size == 0 {
        // Every tree extends the empty tree.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root {
        return Err(ProofError::RootMismatch {
            recomputed: fr,
            expected: *old_root,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            recomputed: sr,
            expected: *new_root,
        });
    }
    Ok(())
}

/// A whole tree held in memory, level by level (leaves first): the RFC 6962 tree
/// built bottom up, pairing nodes and carrying a level's odd last node up
/// unchanged, which is the same tree as the recursive definition. Built in one
/// pass over the leaves (n - 1 node hashes), after which any number of inclusion
/// proofs cost no hashing at all.
#[derive(Debug, Clone)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over `leaves` (leaf hashes).
    pub fn new(leaves: Vec<Hash>) -> Tree {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("a level");
            let above: Vec<Hash> = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [lone] => *lone,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(above);
        }
        Tree { levels }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<&Hash> {
        self.levels[0].get(usize::try_from(index).ok()?)
    }

    /// The tree head.
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(root) if self.size() > 0 => *root,
            _ => empty_root(),
        }
    }

    /// PATH(index, D[n]): the same audit path as [`inclusion_proof`], read off the
    /// levels (a carried node has no sibling at its level, so it adds nothing).
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>, ProofError> {
        if index >= self.size() {
            return Err(ProofError::OutOfRange(format!(
                "leaf {index} is not in a tree of {} leaves",
                self.size()
            )));
        }
        let mut m = index as usize;
        let mut proof = Vec::with_capacity(self.levels.len());
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(m ^ 1) {
                proof.push(*sibling);
            }
            m >>= 1;
        }
        Ok(proof)
    }
}

/// Checks many inclusion proofs against one tree head, remembering every node of
/// every path that verified. A later proof through a remembered node needs no
/// more hashing from there on: the rest of its path is compared with the
/// remembered siblings instead (a node's hash at a position of a tree of a given
/// size is unique, so a match there means the same path to the same root). For
/// proofs of neighbouring leaves that is about one hash per proof instead of
/// log2(n). The answer is always the one [`verify_inclusion`] gives.
#[derive(Debug)]
pub struct ProofChecker {
    size: u64,
    root: Hash,
    /// (level, index) → hash, for nodes on verified paths and their siblings.
    known: std::collections::HashMap<(u8, u64), Hash>,
}

impl ProofChecker {
    /// A checker for proofs into the tree of `size` leaves with head `root`.
    pub fn new(size: u64, root: Hash) -> ProofChecker {
        ProofChecker {
            size,
            root,
            known: std::collections::HashMap::new(),
        }
    }

    /// [`verify_inclusion`] of `leaf` at `index` against this checker's tree head.
    pub fn verify(&mut self, index: u64, leaf: &Hash, proof: &[Hash]) -> Result<(), ProofError> {
        let size = self.size;
        if index >= size {
            return Err(ProofError::OutOfRange(format!(
                "leaf {index} is not in a tree of {size} leaves"
            )));
        }
        // The walk of RFC 9162 §2.1.3.2, with each node's position (level,
        // index): a node that is its level's last and has no sibling there is
        // carried up (the shifts) before its sibling's position is taken.
        let (mut f_n, mut s_n, mut level) = (index, size - 1, 0u8);
        let mut r = *leaf;
        let mut trusted = self.known.get(&(0, index)) == Some(&r);
        let mut seen: Vec<((u8, u64), Hash)> = Vec::new();
        for p in proof {
            if s_n == 0 {
                return Err(ProofError::WrongLength);
            }
            let left = f_n & 1 == 1 || f_n == s_n;
            if left {
                while f_n & 1 == 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                    level += 1;
                }
            }
            let sibling = (level, if left { f_n - 1 } else { f_n + 1 });
            let parent = (level + 1, f_n >> 1);
            if trusted {
                match (self.known.get(&sibling), self.known.get(&parent)) {
                    (Some(known), Some(above)) if known == p => r = *above,
                    // Not the remembered path: hash from here on, as anyone would.
                    _ => trusted = false,
                }
            }
            if !trusted {
                r = if left {
                    node_hash(p, &r)
                } else {
                    node_hash(&r, p)
                };
                seen.push((sibling, *p));
                seen.push((parent, r));
                trusted = self.known.get(&parent) == Some(&r);
            }
            f_n >>= 1;
            s_n >>= 1;
            level += 1;
        }
        if s_n != 0 {
            return Err(ProofError::WrongLength);
        }
        if r != self.root {
            return Err(ProofError::RootMismatch {
                recomputed: r,
                expected: self.root,
            });
        }
        self.known.insert((0, index), *leaf);
        self.known.extend(seen);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn frontier_matches_recursive_definition() {
        let all = leaves(70);
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(frontier.size(), i as u64 + 1);
            assert_eq!(frontier.root(), root_of(&all[..=i]), "size {}", i + 1);
            let again = Frontier::from_bytes(frontier.size(), &frontier.to_bytes()).unwrap();
            assert_eq!(again, frontier);
        }
        assert!(Frontier::from_bytes(3, &[0u8; 32]).is_none());
    }

    /// The RFC 6962 reference vectors (from certificate-transparency-go): leaves are
    /// the byte strings below, roots of the first 1..=8 leaves as listed.
    #[test]
    fn rfc6962_reference_roots() {
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let mut frontier = Frontier::new();
        for (i, expected) in roots.iter().enumerate() {
            frontier.push(hashes[i]);
            assert_eq!(frontier.root().to_hex(), *expected, "size {}", i + 1);
        }
        // The audit path of leaf 0 in the 8-leaf tree, from the same reference tests.
        let proof = inclusion_proof(&hashes, 0).unwrap();
        let hexes: Vec<String> = proof.iter().map(Hash::to_hex).collect();
        assert_eq!(
            hexes,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_inclusion_proof_verifies_and_tampering_fails() {
        let all = leaves(37);
        for n in 1..=all.len() {
            let tree = &all[..n];
            let root = root_of(tree);
            for m in 0..n {
                let proof = inclusion_proof(tree, m as u64).unwrap();
                verify_inclusion(m as u64, n as u64, &tree[m], &proof, &root)
                    .unwrap_or_else(|e| panic!("leaf {m} of {n}: {e}"));
                // A different leaf, index, root or a flipped proof bit all fail.
                let other = leaf_hash(b"not in the tree");
                assert!(verify_inclusion(m as u64, n as u64, &other, &proof, &root).is_err());
                if n > 1 {
                    let wrong = (m as u64 + 1) % n as u64;
                    assert!(verify_inclusion(wrong, n as u64, &tree[m], &proof, &root).is_err());
                    let mut bad = proof.clone();
                    bad[0].0[7] ^= 1;
                    assert!(verify_inclusion(m as u64, n as u64, &tree[m], &bad, &root).is_err());
                    let mut short = proof.clone();
                    short.pop();
                    assert!(verify_inclusion(m as u64, n as u64, &tree[m], &short, &root).is_err());
                }
                let mut long = proof.clone();
                long.push(root);
                assert!(verify_inclusion(m as u64, n as u64, &tree[m], &long, &root).is_err());
            }
        }
        assert!(inclusion_proof(&all[..3], 3).is_err());
    }

    #[test]
    fn the_levelled_tree_gives_the_recursive_roots_and_paths() {
        let all = leaves(70);
        for n in 0..=all.len() {
            let tree = Tree::new(all[..n].to_vec());
            assert_eq!(tree.root(), root_of(&all[..n]), "size {n}");
            for m in 0..n as u64 {
                assert_eq!(
                    tree.inclusion_proof(m).unwrap(),
                    inclusion_proof(&all[..n], m).unwrap(),
                    "leaf {m} of {n}"
                );
            }
            assert!(tree.inclusion_proof(n as u64).is_err());
        }
    }

    #[test]
    fn the_remembering_checker_agrees_with_verify_inclusion() {
        let all = leaves(45);
        for n in 1..=all.len() {
            let tree = &all[..n];
            let root = root_of(tree);
            let mut checker = ProofChecker::new(n as u64, root);
            // Every leaf twice, so the second pass runs on remembered paths; a
            // tampered proof is tried before and after its leaf's path is known.
            for pass in 0..2 {
                for m in 0..n as u64 {
                    let proof = inclusion_proof(tree, m).unwrap();
                    let leaf = &tree[m as usize];
                    let mut bad_leaf = *leaf;
                    bad_leaf.0[3] ^= 1;
                    assert!(checker.verify(m, &bad_leaf, &proof).is_err());
                    for k in 0..proof.len() {
                        let mut bad = proof.clone();
                        bad[k].0[9] ^= 1;
                        assert!(
                            checker.verify(m, leaf, &bad).is_err(),
                            "leaf {m} of {n}, element {k}, pass {pass}"
                        );
                        assert_eq!(
                            checker.verify(m, leaf, &bad).is_err(),
                            verify_inclusion(m, n as u64, leaf, &bad, &root).is_err()
                        );
                    }
                    if proof.len() > 1 {
                        let mut swapped = proof.clone();
                        swapped.swap(0, 1);
                        assert!(checker.verify(m, leaf, &swapped).is_err());
                    }
                    let mut short = proof.clone();
                    if short.pop().is_some() {
                        assert!(checker.verify(m, leaf, &short).is_err());
                    }
                    let mut long = proof.clone();
                    long.push(root);
                    assert!(checker.verify(m, leaf, &long).is_err());
                    if n > 1 {
                        let other = (m + 1) % n as u64;
                        assert!(checker.verify(other, leaf, &proof).is_err());
                    }
                    checker
                        .verify(m, leaf, &proof)
                        .unwrap_or_else(|e| panic!("leaf {m} of {n}, pass {pass}: {e}"));
                }
            }
            assert!(checker.verify(n as u64, &all[0], &[]).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_tampering_fails() {
        let all = leaves(33);
        for n in 1..=all.len() {
            let new_root = root_of(&all[..n]);
            for m in 0..=n {
                let old_root = root_of(&all[..m]);
                let proof = consistency_proof(&all[..n], m as u64).unwrap();
                verify_consistency(m as u64, n as u64, &old_root, &new_root, &proof)
                    .unwrap_or_else(|e| panic!("{m} -> {n}: {e}"));
                if m > 0 && m < n {
                    let mut bad = proof.clone();
                    let last = bad.len() - 1;
                    bad[last].0[0] ^= 0x80;
                    assert!(
                        verify_consistency(m as u64, n as u64, &old_root, &new_root, &bad).is_err()
                    );
                    let forged_old = leaf_hash(b"forged");
                    assert!(
                        verify_consistency(m as u64, n as u64, &forged_old, &new_root, &proof)
                            .is_err()
                    );
                    let forged_new = leaf_hash(b"forged");
                    assert!(
                        verify_consistency(m as u64, n as u64, &old_root, &forged_new, &proof)
                            .is_err()
                    );
                    assert!(
                        verify_consistency(m as u64, n as u64, &old_root, &new_root, &[]).is_err()
                    );
                }
            }
        }
        // A rewritten history (different leaf 2) is not consistent with the old head.
        let mut rewritten = all[..10].to_vec();
        rewritten[2] = leaf_hash(b"rewritten");
        let proof = consistency_proof(&rewritten, 6).unwrap();
        assert!(
            verify_consistency(6, 10, &root_of(&all[..6]), &root_of(&rewritten), &proof).is_err()
        );
    }
}
