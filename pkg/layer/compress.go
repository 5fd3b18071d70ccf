package layer

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Compression is how a layer blob is compressed.
type Compression string

const (
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
	Uncompressed Compression = "none"
)

// ParseCompression accepts the --compression flag's values.
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case Gzip, Zstd, Uncompressed, Estargz:
		return Compression(s), nil
	case "", "default":
		return Gzip, nil
	case "uncompressed":
		return Uncompressed, nil
	}
	return "", fmt.Errorf("unknown compression %q: use gzip, zstd, estargz or none", s)
}

// DefaultLevel is the level used when none is given: gzip BestSpeed (ggcr's and crane's
// default; compression dominates cold builds), zstd's default speed.
func (c Compression) DefaultLevel() int {
	switch c {
	case Gzip, Estargz:
		return gzip.BestSpeed
	case Zstd:
		return int(zstd.SpeedDefault)
	}
	return 0
}

func (c Compression) validLevel(level int) error {
	switch c {
	case Gzip, Estargz:
		if level < gzip.HuffmanOnly || level > gzip.BestCompression {
			return fmt.Errorf("gzip level %d out of range: use 1 (fastest) to 9 (smallest)", level)
		}
	case Zstd:
		if level < int(zstd.SpeedFastest) || level > int(zstd.SpeedBestCompression) {
			return fmt.Errorf("zstd level %d out of range: use 1 (fastest) to 4 (smallest)", level)
		}
	}
	return nil
}

// Parallel compressors cut their input into fixed-size blocks; the output depends on the block
// size only, never on how many blocks are in flight, so digests are the same on every machine
// (TestDeterministicAcrossCachesAndCores). zstd compresses a stream block after block, one
// ahead in the background with 2 workers or more (with one it switches to another algorithm
// and another output); its output is the same for any number above one.
//
// pgzip holds about three block-sized buffers per block in flight (input, output, and the
// previous block's 32 KiB tail in a buffer of full size): 256 KiB blocks took a cold medium
// build from 73 to 52 MB peak RSS against 1 MiB, for the same time and 0.02 % more bytes
// (each block starts from the previous one's tail as its dictionary).
const gzipBlockSize = 256 << 10

func workers() int { return max(2, runtime.GOMAXPROCS(0)) }

// compressor returns a writer that compresses into w with every core working on it.
func (c Compression) compressor(w io.Writer, level int) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		zw, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, err
		}
		if err := zw.SetConcurrency(gzipBlockSize, workers()); err != nil {
			return nil, err
		}
		return zw, nil
	case Zstd:
		// A 1 MiB window (default 8 MiB) keeps the encoder's history small. No job-based
		// parallel compression of one stream (WithConcurrentBlocks): layers are already written
		// side by side on every core, and its 4 MiB jobs in flight per layer took a cold build
		// of the medium workload to 129 MB peak RSS and of the large one to 177 MB. Without it:
		// 53–56 and 80 MB, about 10 % and 15 % faster on two cores, 0.1 % smaller layers.
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.EncoderLevel(level)),
			zstd.WithEncoderConcurrency(workers()), zstd.WithWindowSize(1<<20))
	case Uncompressed:
		return nopWriteCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

// decompressor reads what compressor wrote.
func (c Compression) decompressor(r io.Reader) (io.ReadCloser, error) {
	switch c {
	case Gzip, Estargz:
		return pgzip.NewReader(r)
	case Zstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	case Uncompressed:
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// writerPool keeps compressors and blob buffers from one layer to the next within a build. A
// parallel gzip writer holds its block buffers and deflate state (megabytes); made afresh for
// each layer they were 250 MB of garbage per cold build of a 218 MB context, and the collector's
// time with it. Reuse does not change a byte: both compressors reset to the same state.
type writerPool struct {
	mu  sync.Mutex
	zw  []io.WriteCloser
	buf []*bufio.Writer
}

// compressor is c.compressor(w, level), reusing one that put gave back.
func (p *writerPool) compressor(c Compression, w io.Writer, level int) (io.WriteCloser, error) {
	p.mu.Lock()
	var zw io.WriteCloser
	if n := len(p.zw); n > 0 {
		zw, p.zw = p.zw[n-1], p.zw[:n-1]
	}
	p.mu.Unlock()
	switch zw := zw.(type) {
	case *pgzip.Writer:
		zw.Reset(w)
		// Reset picks its own block size and count: set ours again (the pooled buffers stay)
		if err := zw.SetConcurrency(gzipBlockSize, workers()); err != nil {
			return nil, err
		}
		return zw, nil
	case *zstd.Encoder:
		zw.Reset(w)
		return zw, nil
	}
	return c.compressor(w, level)
}

// put gives back a compressor that was closed without error.
func (p *writerPool) put(zw io.WriteCloser) {
	switch zw.(type) {
	case *pgzip.Writer, *zstd.Encoder:
		p.mu.Lock()
		p.zw = append(p.zw, zw)
		p.mu.Unlock()
	}
}

// buffer is a 1 MiB buffered writer onto w.
func (p *writerPool) buffer(w io.Writer) *bufio.Writer {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.buf); n > 0 {
		bw := p.buf[n-1]
		p.buf = p.buf[:n-1]
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, 1<<20)
}

func (p *writerPool) putBuffer(bw *bufio.Writer) {
	bw.Reset(nil)
	p.mu.Lock()
	p.buf = append(p.buf, bw)
	p.mu.Unlock()
}
