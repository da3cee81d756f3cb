# The two commands of the README. Both create or refresh .venv themselves.
.PHONY: demo test venv

venv:
	./scripts/venv.sh

## Set up and run the main job on embedded defaults.
demo: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" \
	FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 OMP_WAIT_POLICY=PASSIVE \
	.venv/bin/hermes-fed demo --dir var/demo

## Set up and run the whole test suite (ruff, mypy --strict, pytest).
test: venv
	./scripts/test.sh
