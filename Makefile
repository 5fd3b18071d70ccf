# The README's commands. `make test` is what CI runs (.ci/run).
.PHONY: test test-short demo bench images

test:
	bash test/run.sh

test-short:
	go test -short ./...

demo:
	go run ./cmd/fairing-builder demo

bench:
	bash benchmarks/run.sh

# fairing's own images (fairing-base, fairing-builder, fairing-submit; linux/amd64 + linux/arm64), built by
# fairing-builder itself and pushed: make images REGISTRY=host:port[/prefix] [VERSION=...] [PLATFORMS=...]
images:
	@test -n "$(REGISTRY)" || { echo "usage: make images REGISTRY=host:port[/prefix]"; exit 2; }
	bash images/build.sh "$(REGISTRY)"
