// Package hll estimates the number of distinct data subjects a session or an
// employee has received, in fixed memory.
//
// A Sketch is a dense HyperLogLog (Flajolet et al. 2007) of 2^p one-byte
// registers, p in 4..16 (p=14 by default: 16 KiB, standard error
// 1.04/sqrt(2^p) = 0.81%). Callers feed it 64-bit hashes of a subject key (a
// primary key, or the PII value itself): Add takes a hash the caller already
// has, AddBytes, AddString and AddUint64 hash with the package's own
// allocation-free function (see Hash64).
//
// Estimate uses linear counting while it is the better estimator (below the
// HLL++ thresholds of Heule et al. 2013), and above that Ertl's improved
// estimator ("New cardinality estimation algorithms for HyperLogLog
// sketches", 2017), which corrects the raw estimator's bias over the whole
// range without HLL++'s empirical tables. With 64-bit hashes no large-range
// correction is needed. The sparse representation of HLL++ is not
// implemented: a sketch always costs 2^p bytes.
//
// Sketches of equal precision Merge to the sketch of the union; MergeFolded
// and Downsample fold a finer sketch into a coarser one, which is how
// per-statement sketches feed the coarser per-bucket sketches of
// policy/window. MarshalBinary writes a versioned format for persistence.
//
// A Counter counts exactly, with the set of the hashes, up to ExactLimit
// (4096) distinct elements, and switches to a Sketch above: a limit of a few
// hundred subjects is never crossed by the sketch's error. Two exact
// counters merge to an exact one while the union stays under the limit.
//
// Sketches and Counters are not safe for concurrent use.
package hll
