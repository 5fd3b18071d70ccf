package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/klauspost/pgzip"
	"github.com/zeebo/blake3"
)

// Limits are what this machine can do at best, measured by the harness itself, so every
// figure is read against what is possible. Throughputs are input MB/s (1 MB = 10^6 bytes).
type Limits struct {
	SHA256MBps float64 `json:"sha256_mbps"`
	// BLAKE3 over the text files one by one, one core: how the builder names file contents
	// (a build that reuses every layer still hashes the files the stat cache does not know).
	// Zero in results from before it was measured (sha256 then named them).
	BLAKE3FilesMBps float64 `json:"blake3_files_mbps,omitempty"`
	// pgzip BestSpeed over every core with 256 KiB blocks: what fairing-builder compresses with.
	PgzipTextMBps     float64 `json:"pgzip_text_mbps"`
	PgzipTextRatio    float64 `json:"pgzip_text_ratio"`
	PgzipWeightsMBps  float64 `json:"pgzip_weights_mbps"`
	PgzipWeightsRatio float64 `json:"pgzip_weights_ratio"`
	// stdlib compress/gzip BestSpeed on one core: what crane compresses with (twice when cold).
	GzipStdTextMBps float64 `json:"gzip_std_text_mbps"`
	// stdlib compress/gzip at its default level (6), one core: what BuildKit's and docker's
	// exporters compress with by default.
	Gzip6TextMBps float64 `json:"gzip6_text_mbps"`
	// WalkDir + Lstat of the whole context, warm page cache: the floor of an unchanged build.
	WalkMs      float64 `json:"walk_ms"`
	WalkEntries int     `json:"walk_entries"`
	// Monolithic upload (POST, then PUT with the body) of a random blob to the registry.
	UploadMBps  float64 `json:"upload_mbps"`
	UploadBytes int64   `json:"upload_bytes"`
	Cores       int     `json:"cores"`
	// ExecMs: start and exit of the builder binary (`version`), as the launcher measures it;
	// RequestMs: one small HTTP request to the registry. Even a build that does nothing pays
	// one of the first and a few of the second (base manifest and config, the destination's
	// manifest).
	ExecMs    float64 `json:"exec_ms"`
	RequestMs float64 `json:"request_ms"`
}

// requestsPerBuild are the registry round trips every build makes, at least: the base's
// manifest and config, the destination's manifest, and the manifest put or check.
const requestsPerBuild = 4

// best runs f until it has run at least passes times and minTime has elapsed, and returns
// the fastest pass.
func best(passes int, minTime time.Duration, f func() error) (time.Duration, error) {
	var bestD time.Duration
	start := time.Now()
	for i := 0; i < passes || time.Since(start) < minTime; i++ {
		t := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		if d := time.Since(t); bestD == 0 || d < bestD {
			bestD = d
		}
		if i > 20 {
			break
		}
	}
	return bestD, nil
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

// readSample concatenates files under dir that keep(path) accepts, up to limit bytes.
func readSample(dir string, limit int, keep func(string) bool) ([]byte, []int, error) {
	var buf bytes.Buffer
	var sizes []int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !keep(p) || buf.Len() >= limit {
			return err
		}
		b, err := os.ReadFile(p)
		buf.Write(b)
		sizes = append(sizes, len(b))
		return err
	})
	b := buf.Bytes()
	if len(b) > limit {
		b = b[:limit]
		sizes[len(sizes)-1] -= buf.Len() - limit
	}
	return b, sizes, err
}

// blake3Files hashes data cut at sizes, one digest per file, as the builder names file contents.
func blake3Files(data []byte, sizes []int) {
	for _, n := range sizes {
		blake3.Sum256(data[:n])
		data = data[n:]
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func pgzipPass(data []byte) (int64, error) {
	cw := &countWriter{}
	zw, err := pgzip.NewWriterLevel(cw, pgzip.BestSpeed)
	if err != nil {
		return 0, err
	}
	if err := zw.SetConcurrency(256<<10, max(2, runtime.GOMAXPROCS(0))); err != nil {
		return 0, err
	}
	if _, err := zw.Write(data); err != nil {
		return 0, err
	}
	return cw.n, zw.Close()
}

func measureLimits(ctx context.Context, ctxDir, registry string, uploadBytes int64, builder string) (Limits, error) {
	l := Limits{Cores: runtime.GOMAXPROCS(0)}
	if builder != "" {
		for i := 0; i < 5; i++ {
			st, _, err := runStep(ctx, "exec", nil, builder, "version")
			if err != nil {
				return l, fmt.Errorf("run %s version: %w", builder, err)
			}
			if l.ExecMs == 0 || st.WallMs < l.ExecMs {
				l.ExecMs = st.WallMs
			}
		}
	}
	if registry != "" {
		d, err := best(20, 0, func() error {
			resp, err := http.Get("http://" + registry + "/v2/")
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		})
		if err != nil {
			return l, fmt.Errorf("request to %s: %w", registry, err)
		}
		l.RequestMs = ms(d)
	}
	isWeights := func(p string) bool {
		return strings.Contains(p, string(filepath.Separator)+"models"+string(filepath.Separator))
	}
	text, textSizes, err := readSample(ctxDir, 64<<20, func(p string) bool { return !isWeights(p) })
	if err != nil {
		return l, fmt.Errorf("read text sample: %w", err)
	}
	weights, _, err := readSample(ctxDir, 64<<20, isWeights)
	if err != nil {
		return l, fmt.Errorf("read weights sample: %w", err)
	}
	if len(text) == 0 || len(weights) == 0 {
		return l, fmt.Errorf("context %s has no text or no weights to measure", ctxDir)
	}
	const minTime = time.Second
	d, _ := best(3, minTime, func() error { sha256.Sum256(text); return nil })
	l.SHA256MBps = mbps(int64(len(text)), d)
	d, _ = best(3, minTime, func() error { blake3Files(text, textSizes); return nil })
	l.BLAKE3FilesMBps = mbps(int64(len(text)), d)

	var out int64
	d, err = best(3, minTime, func() (err error) { out, err = pgzipPass(text); return })
	if err != nil {
		return l, err
	}
	l.PgzipTextMBps, l.PgzipTextRatio = mbps(int64(len(text)), d), float64(out)/float64(len(text))
	d, err = best(3, minTime, func() (err error) { out, err = pgzipPass(weights); return })
	if err != nil {
		return l, err
	}
	l.PgzipWeightsMBps, l.PgzipWeightsRatio = mbps(int64(len(weights)), d), float64(out)/float64(len(weights))
	d, _ = best(2, minTime, func() error {
		zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
		zw.Write(text)
		return zw.Close()
	})
	l.GzipStdTextMBps = mbps(int64(len(text)), d)
	d, _ = best(1, 0, func() error {
		zw, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
		zw.Write(text[:min(len(text), 32<<20)])
		return zw.Close()
	})
	l.Gzip6TextMBps = mbps(int64(min(len(text), 32<<20)), d)

	d, err = best(3, 0, func() error {
		n := 0
		err := filepath.WalkDir(ctxDir, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			n++
			_, err = os.Lstat(p)
			return err
		})
		l.WalkEntries = n
		return err
	})
	if err != nil {
		return l, fmt.Errorf("walk %s: %w", ctxDir, err)
	}
	l.WalkMs = ms(d)

	if registry != "" && uploadBytes > 0 {
		blob := make([]byte, uploadBytes)
		var bestD time.Duration
		for i := 0; i < 2; i++ {
			rand.Read(blob) // a new digest each time: the registry must take every byte
			digest := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
			t := time.Now()
			if err := upload(ctx, registry, "bench/limits", blob, digest); err != nil {
				return l, fmt.Errorf("upload to %s: %w", registry, err)
			}
			if d := time.Since(t); bestD == 0 || d < bestD {
				bestD = d
			}
		}
		l.UploadMBps, l.UploadBytes = mbps(uploadBytes, bestD), uploadBytes
	}
	return l, nil
}

// upload pushes blob in one request, the fastest way the distribution API allows.
func upload(ctx context.Context, registry, repo string, blob []byte, digest string) error {
	base := "http://" + registry
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("start upload: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	if strings.HasPrefix(loc, "/") {
		loc = base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	loc += sep + "digest=" + digest
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, loc, bytes.NewReader(blob))
	req.ContentLength = int64(len(blob))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("put blob: %s", resp.Status)
	}
	return nil
}
