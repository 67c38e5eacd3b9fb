#!/usr/bin/env bash
# Install each workspace package alone (its own declared dependencies only, from uv.lock) into a
# throwaway environment (with its declared extras), load every console script it declares and
# import every module it ships: an undeclared dependency fails here, not on a production host.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV="${UV:-uv}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
status=0
for manifest in libs/*/pyproject.toml services/*/pyproject.toml; do
  package="$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)"
  env="$root/$package"
  if ! UV_PROJECT_ENVIRONMENT="$env" "$UV" sync -q --locked --no-dev --all-extras --package "$package" 2>"$env.log"; then
    echo "packages: $package does not install alone:"; cat "$env.log"; status=1; continue
  fi
  if ! "$env/bin/python" - "$package" <<'PY'
import importlib, pkgutil, sys
from importlib.metadata import distribution
dist = distribution(sys.argv[1])
scripts = [ep for ep in dist.entry_points if ep.group == "console_scripts"]
for ep in scripts:
    ep.load()
top = (dist.read_text("top_level.txt") or "").split() or [sys.argv[1].replace("-", "_")]
for name in top:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
print(f"packages: {sys.argv[1]} alone: ok ({', '.join(ep.name for ep in scripts) or 'a library'})")
PY
  then
    echo "packages: $package fails to load with only its declared dependencies"; status=1
  fi
done
exit $status
