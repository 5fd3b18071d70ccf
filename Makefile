# The README's commands. `make test` is what CI runs (.ci/run).
.PHONY: test test-short demo bench

test:
	bash test/run.sh

test-short:
	go test -short ./...

demo:
	go run ./cmd/fairing-builder demo

bench:
	bash benchmarks/run.sh
