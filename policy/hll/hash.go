package hll

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// Constants of wyhash (Wang Yi, public domain).
const (
	wyp0 = 0xa0761d6478bd642f
	wyp1 = 0xe7037ed1a0b428db
	wyp2 = 0x8ebc6af09c88c6db
	wyp3 = 0x589965cc75374cc3
)

func wymix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func r8(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
func r4(b []byte) uint64 { return uint64(binary.LittleEndian.Uint32(b)) }

// Hash64 returns a 64-bit hash of b with the given seed. It follows the
// structure of wyhash final v4 (multiply-and-fold of 128-bit products, 48
// bytes per round) but is not promised to be bit-compatible with the
// reference: do not compare its values with other implementations, and
// persist sketches only together with this package. wyhash passes SMHasher;
// this package's tests check avalanche (one flipped input bit changes about
// half the output bits) and the uniformity that HyperLogLog relies on. It is
// not a cryptographic hash: an adversary who controls the keys can aim at
// chosen registers, which only lowers (never raises) the estimate. It does
// not allocate.
func Hash64(b []byte, seed uint64) uint64 {
	n := len(b)
	seed ^= wymix(seed^wyp0, wyp1)
	var a, c uint64
	switch {
	case n <= 16:
		if n >= 4 {
			off := (n >> 3) << 2
			a = r4(b)<<32 | r4(b[off:])
			c = r4(b[n-4:])<<32 | r4(b[n-4-off:])
		} else if n > 0 {
			a = uint64(b[0])<<16 | uint64(b[n>>1])<<8 | uint64(b[n-1])
		}
	default:
		p := b
		if len(p) > 48 {
			see1, see2 := seed, seed
			for len(p) > 48 {
				seed = wymix(r8(p)^wyp1, r8(p[8:])^seed)
				see1 = wymix(r8(p[16:])^wyp2, r8(p[24:])^see1)
				see2 = wymix(r8(p[32:])^wyp3, r8(p[40:])^see2)
				p = p[48:]
			}
			seed ^= see1 ^ see2
		}
		for len(p) > 16 {
			seed = wymix(r8(p)^wyp1, r8(p[8:])^seed)
			p = p[16:]
		}
		// The last 16 bytes of b, which may overlap bytes already mixed.
		a = r8(b[n-16:])
		c = r8(b[n-8:])
	}
	a ^= wyp1
	c ^= seed
	hi, lo := bits.Mul64(a, c)
	return wymix(lo^wyp0^uint64(n), hi^wyp1)
}

// HashString is Hash64 over the bytes of s, without copying them.
func HashString(s string, seed uint64) uint64 {
	return Hash64(unsafe.Slice(unsafe.StringData(s), len(s)), seed)
}

// HashUint64 hashes an integer key such as a bigint primary key: the same
// function as Hash64 over its 8 little-endian bytes, inlined.
func HashUint64(x, seed uint64) uint64 {
	seed ^= wymix(seed^wyp0, wyp1)
	a := x<<32 | x>>32
	c := x
	a ^= wyp1
	c ^= seed
	hi, lo := bits.Mul64(a, c)
	return wymix(lo^wyp0^8, hi^wyp1)
}
