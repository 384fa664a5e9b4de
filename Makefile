# The two commands a newcomer needs: `make serve` and `make test`. Both set up what is missing first.
.PHONY: setup serve test lint format typecheck bench clean

setup:
	@bash scripts/setup.sh

serve: setup
	@node dist/cli/main.js serve $(ARGS)

test: setup
	npx eslint .
	npx prettier --check . --log-level warn
	npx tsc -p tsconfig.json --noEmit
	npx vitest run

lint: setup
	npx eslint .
	npx prettier --check . --log-level warn

format: setup
	npx prettier --write . --log-level warn

typecheck: setup
	npx tsc -p tsconfig.json --noEmit

bench:
	@bash scripts/setup.sh --bench
	npx tsx bench/run.ts $(ARGS)

clean:
	rm -rf dist
