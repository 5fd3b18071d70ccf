package layer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
		// The estargz writer hashes every file for its TOC: the contents are checked (or their
		// digests taken) from there below, not hashed a fifth time here.
		err := writeTarHashing(ctx, pw, entries, b.opts.Tar, false)
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
	if err := checkTOCDigests(entries, c.toc); err != nil {
		return "", 0, "", err
	}
	return ew.DiffID(), c.uncompressed, toc, nil
}

// checkTOCDigests checks every regular file written against the content digest the TOC
// recorded for it (or takes that digest, for a file not hashed before).
func checkTOCDigests(entries []Entry, toc *estargz.JTOC) error {
	if toc == nil {
		return fmt.Errorf("write estargz TOC: the writer produced none")
	}
	digests := make(map[string]string, len(toc.Entries))
	for _, te := range toc.Entries {
		if te.Type == "reg" {
			digests[te.Name] = te.Digest
		}
	}
	for i := range entries {
		e := &entries[i]
		if e.Type != TypeFile {
			continue
		}
		d, err := digest.Parse(digests[e.Path])
		if err != nil || d.Algorithm() != digest.SHA256 {
			return fmt.Errorf("estargz TOC: no sha256 digest for /%s (%q)", e.Path, digests[e.Path])
		}
		var got [32]byte
		if _, err := hex.Decode(got[:], []byte(d.Encoded())); err != nil {
			return fmt.Errorf("estargz TOC: digest of /%s: %w", e.Path, err)
		}
		if err := e.checkDigest(got); err != nil {
			return err
		}
	}
	return nil
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
	// toc is the TOC the writer wrote, with each regular file's content digest.
	toc *estargz.JTOC
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
	c.toc = toc
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
	return Entry{Path: name, Type: TypeFile, Mode: 0o644, Size: 1, src: dataOrigin(data), digest: sha256.Sum256(data), hashed: true}
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
