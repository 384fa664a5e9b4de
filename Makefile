# The two commands a newcomer needs: `make serve` and `make test`. Both set up what is missing first.
.PHONY: setup serve test lint typecheck unit bench clean

setup:
	@bash scripts/setup.sh

serve: setup
	@node dist/cli/main.js serve $(ARGS)

test: setup
	npx biome check .
	npx tsc -p tsconfig.json --noEmit
	npx vitest run

lint: setup
	npx biome check .

typecheck: setup
	npx tsc -p tsconfig.json --noEmit

bench: setup
	npx tsx bench/run.ts $(ARGS)

clean:
	rm -rf dist
