package buildkit

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/client/ociindex"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// layoutWriter receives the OCI exporter's tar stream and writes it into an OCI image layout
// directory as it arrives: blobs the layout already has are skipped, and the image is added to
// the layout's index.json under its tags once the build succeeded (commit), so other images in
// the layout are kept.
type layoutWriter struct {
	dir  string
	pw   *io.PipeWriter
	done chan error
	desc *ocispecs.Descriptor // the exported image's entry in the tar's index.json
}

func newLayoutWriter(dir string) (*layoutWriter, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	pr, pw := io.Pipe()
	w := &layoutWriter{dir: dir, pw: pw, done: make(chan error, 1)}
	go func() {
		err := w.read(pr)
		pr.CloseWithError(err) // unblocks the exporter if reading failed
		w.done <- err
	}()
	return w, nil
}

func (w *layoutWriter) Write(p []byte) (int, error) { return w.pw.Write(p) }

// Close ends the stream and waits until everything is on disk.
func (w *layoutWriter) Close() error {
	w.pw.Close()
	return <-w.done
}

func (w *layoutWriter) read(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("oci layout %s: read export: %w", w.dir, err)
		}
		name := path.Clean(h.Name)
		switch {
		case h.Typeflag == tar.TypeDir:
		case name == "index.json":
			var idx ocispecs.Index
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				return fmt.Errorf("oci layout %s: exported index.json: %w", w.dir, err)
			}
			if len(idx.Manifests) != 1 {
				return fmt.Errorf("oci layout %s: the export holds %d images, want 1", w.dir, len(idx.Manifests))
			}
			d := idx.Manifests[0]
			d.Annotations = nil // the exporter's names; the layout gets the destination's tags
			w.desc = &d
		case strings.HasPrefix(name, "blobs/") && h.Typeflag == tar.TypeReg:
			if err := w.writeBlob(name, tr, h.Size); err != nil {
				return err
			}
		}
	}
	// the rest of the stream, if any, must be consumed for the exporter to finish
	_, err := io.Copy(io.Discard, r)
	return err
}

func (w *layoutWriter) writeBlob(name string, r io.Reader, size int64) error {
	dst := filepath.Join(w.dir, filepath.FromSlash(name))
	if fi, err := os.Stat(dst); err == nil && fi.Size() == size {
		return nil // content-addressed: already there
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".partial-")
	if err != nil {
		return fmt.Errorf("oci layout %s: %w", w.dir, err)
	}
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("oci layout %s: write %s: %w", w.dir, name, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// commit names the exported image in the layout's index.json.
func (w *layoutWriter) commit(tags []string) error {
	if w.desc == nil {
		return errors.New("oci layout " + w.dir + ": the export held no index.json")
	}
	names := make([]ociindex.NameOrTag, 0, len(tags))
	for _, t := range tags {
		names = append(names, ociindex.Tag(t))
	}
	if err := ociindex.NewStoreIndex(w.dir).Put(*w.desc, names...); err != nil {
		return fmt.Errorf("oci layout %s: %w", w.dir, err)
	}
	return nil
}
