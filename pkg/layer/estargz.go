package layer

import (
	"context"
	"fmt"
	"hash"
	"io"
	"path"
	"strconv"
	"sync"

	"github.com/containerd/stargz-snapshotter/estargz"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
)

// Estargz layers are gzip layers that a node running the stargz snapshotter can mount before
// they are fully pulled. They are written with estargz's streaming, lossless writer (as
// BuildKit does): our deterministic tar goes through unchanged, split into one gzip member per
// file chunk, followed by a table of contents. estargz.Build is avoided on purpose: it reorders
// entries, needs random access, and its chunking depends on the number of cores.
const Estargz Compression = "estargz"

// Annotations an eStargz layer descriptor carries.
const (
	AnnotationTOCDigest        = estargz.TOCJSONDigestAnnotation
	AnnotationUncompressedSize = estargz.StoreUncompressedSizeAnnotation
)

// writeEstargz streams the tar of entries through the estargz writer into w and returns the
// record fields only the writer knows: the diffID (which covers the TOC entry it appends), the
// uncompressed size and the TOC digest.
func (b *Builder) writeEstargz(ctx context.Context, w io.Writer, entries []Entry) (diffID string, size int64, toc digest.Digest, err error) {
	pr, pw := io.Pipe()
	tarErr := make(chan error, 1)
	go func() {
		// The TOC's file digests are sha256; the content digest is not (contenthash.go), so the
		// files are hashed on the way in, as for every other compression.
		err := writeTar(ctx, pw, entries, b.opts.Tar)
		tarErr <- err
		pw.CloseWithError(err)
	}()
	c := &fastGzip{GzipCompressor: estargz.NewGzipCompressorWithLevel(b.opts.Level), level: b.opts.Level}
	ew := estargz.NewWriterWithCompressor(w, c)
	err = ew.AppendTarLossLess(pr)
	pr.Close()
	if terr := <-tarErr; terr != nil {
		return "", 0, "", terr // the cause (a file that changed, a cancelled build), not the pipe's echo of it
	}
	if err != nil {
		return "", 0, "", err
	}
	if toc, err = ew.Close(); err != nil {
		return "", 0, "", fmt.Errorf("write estargz TOC: %w", err)
	}
	return ew.DiffID(), c.uncompressed, toc, nil
}

// fastGzip is estargz's gzip compressor with klauspost's deflate (about twice as fast as the
// standard library at the same level, same format) and writers reused across the thousands of
// gzip members a layer of small files holds. It also counts the uncompressed bytes for the
// uncompressed-size annotation.
type fastGzip struct {
	*estargz.GzipCompressor
	level        int
	pool         sync.Pool
	uncompressed int64
}

func (c *fastGzip) Writer(w io.Writer) (estargz.WriteFlushCloser, error) {
	zw, _ := c.pool.Get().(*kgzip.Writer)
	if zw == nil {
		var err error
		if zw, err = kgzip.NewWriterLevel(w, c.level); err != nil {
			return nil, err
		}
	} else {
		zw.Reset(w)
	}
	return &pooledGzip{Writer: zw, c: c}, nil
}

func (c *fastGzip) WriteTOCAndFooter(w io.Writer, off int64, toc *estargz.JTOC, diffHash hash.Hash) (digest.Digest, error) {
	ch := &countingHash{Hash: diffHash}
	d, err := c.GzipCompressor.WriteTOCAndFooter(w, off, toc, ch)
	c.uncompressed += ch.n
	return d, err
}

type pooledGzip struct {
	*kgzip.Writer
	c *fastGzip
}

func (p *pooledGzip) Write(b []byte) (int, error) {
	p.c.uncompressed += int64(len(b))
	return p.Writer.Write(b)
}

func (p *pooledGzip) Close() error {
	err := p.Writer.Close()
	p.c.pool.Put(p.Writer)
	return err
}

type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}

// landmark returns the marker file estargz readers look for: after the prioritised files
// (prefetched before the container starts), or first when nothing is prioritised.
func landmark(prioritised bool) Entry {
	name := estargz.NoPrefetchLandmark
	if prioritised {
		name = estargz.PrefetchLandmark
	}
	data := []byte{0xf}
	return Entry{Path: name, Type: TypeFile, Mode: 0o644, Size: 1, src: dataOrigin(data), digest: contentSum(data), hashed: true}
}

// estargzOrder puts the prioritised files of a layer (with their parent directories) first, in
// the order given, then the landmark, then everything else in sorted order.
func estargzOrder(entries []Entry, prioritize []string) []Entry {
	index := map[string]int{}
	for i, e := range entries {
		index[e.Path] = i
	}
	taken := make([]bool, len(entries))
	var front []Entry
	for _, p := range prioritize {
		p = cleanImagePath(p)
		i, ok := index[p]
		if !ok || taken[i] || entries[i].Type == TypeDir {
			continue
		}
		var parents []string
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for k := len(parents) - 1; k >= 0; k-- {
			if j, ok := index[parents[k]]; ok && !taken[j] {
				taken[j] = true
				front = append(front, entries[j])
			}
		}
		taken[i] = true
		front = append(front, entries[i])
	}
	out := make([]Entry, 0, len(entries)+1)
	if len(front) > 0 {
		out = append(out, front...)
		out = append(out, landmark(true))
	} else {
		out = append(out, landmark(false))
	}
	for i, e := range entries {
		if !taken[i] {
			out = append(out, e)
		}
	}
	return out
}

func cleanImagePath(p string) string {
	p = path.Clean("/" + p)
	return p[1:]
}

func estargzAnnotations(toc digest.Digest, size int64) map[string]string {
	return map[string]string{
		AnnotationTOCDigest:        toc.String(),
		AnnotationUncompressedSize: strconv.FormatInt(size, 10),
	}
}
