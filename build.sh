#!/usr/bin/env bash
# Build, package and check the kinesis-telemetry-extension Lambda layers.
#
#   ./build.sh deps         install/check what the build needs (rustup targets, Debian packages)
#   ./build.sh [build]      static musl release binaries for x86_64 and arm64, and their layer zips:
#                             dist/kinesis-telemetry-extension-x86_64.zip
#                             dist/kinesis-telemetry-extension-arm64.zip
#                           each holding exactly `extensions/kinesis-telemetry-extension` (mode 0755)
#   ./build.sh size-check   build, then fail if the stripped x86_64 binary is >= 2.5 MiB
#                           or any layer zip is >= 1.2 MiB
#   ./build.sh arm64-smoke  build, take the arm64 binary out of its zip, check it is a static
#                           AArch64 ELF, run it under qemu-aarch64-static with a Runtime API address
#                           where nothing listens: it must exit by itself, with the same status as
#                           the x86_64 binary run natively the same way; then run it under qemu in
#                           the local sandbox (20 invocations): every event must reach the mock;
#                           then run the unit tests for arm64 under qemu (HTTPS tests included)
#   ./build.sh local ARGS   run the extension in the local Lambda sandbox (mock endpoints), report
#   ./build.sh bench ARGS   the benchmarks (sandbox --bench) of the shipped static musl x86_64
#                           binary (built if needed): cold start, per-invoke overhead, sustained
#                           events/s, peak RSS, binary size; each figure against its target
#   ./build.sh test ARGS    every test: set up .venv (moto, cfn-lint), cargo nextest run --workspace
#                           (or cargo test --workspace) ARGS, cfn-lint template.yml
#   ./build.sh release [--allow-dirty]
#                           from a clean checkout whose CHANGELOG.md dates Cargo.toml's version:
#                           build, copy the zips to dist/release/<version>/ under versioned names,
#                           write their SHA256SUMS, and print the `aws lambda publish-layer-version`
#                           commands for both architectures (docs/releasing.md)
#   ./build.sh fuzz [SECONDS] [TARGET...]
#                           run each fuzz target (fuzz/, cargo-fuzz) for SECONDS (default 60),
#                           installing cargo-fuzz from crates.io when missing; nightly flags come
#                           from a nightly toolchain when rustup has one, else RUSTC_BOOTSTRAP=1
#                           on stable. Corpus in fuzz/corpus/<target> (seeded from fuzz/seeds),
#                           findings in fuzz/artifacts/<target>; fails if any target finds one
#
# Reproducibility: the zips use a fixed timestamp (1980-01-01 00:00:00), one entry, fixed
# attributes; the binaries are built with build paths remapped (--remap-path-prefix for rustc,
# -ffile-prefix-map for ring's C), so building twice, or from another checkout path or
# CARGO_TARGET_DIR, gives byte-identical zips with the same toolchain and Debian packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

NAME="kinesis-telemetry-extension"
DIST="$ROOT/dist"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"

# Layer architecture name (as in Lambda's CompatibleArchitectures) -> Rust target triple.
ARCHES=(x86_64 arm64)
declare -A TRIPLE=([x86_64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl)

# Size budget (issue: stripped x86_64 binary < 2.5 MiB, each zip < 1.2 MiB), in bytes.
MAX_BINARY_BYTES=$((5 * 1024 * 1024 / 2)) # 2.5 MiB = 2621440: fails at >= this
MAX_ZIP_BYTES=$((12 * 1024 * 1024 / 10))  # 1.2 MiB = 1258291.2: fails at > 1258291

# Commands the build needs, and the Debian package that provides each.
declare -A DEB_FOR=(
	[musl-gcc]=musl-tools
	[aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
	[qemu-aarch64-static]=qemu-user-static
	[readelf]=binutils
	[strip]=binutils
	[python3]=python3
)
REQUIRED_CMDS=(musl-gcc aarch64-linux-gnu-gcc qemu-aarch64-static readelf strip python3)
# Files the build needs: the arm64 C headers ring's C compiles against (a Recommends of
# gcc-aarch64-linux-gnu, so not there after an install with --no-install-recommends).
declare -A DEB_FOR_FILE=([/usr/aarch64-linux-gnu/include/stdint.h]=libc6-dev-arm64-cross)

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'build.sh: error: %s\n' "$*" >&2
	exit 1
}

binary_path() { echo "$TARGET_DIR/${TRIPLE[$1]}/release/$NAME"; }
zip_path() { echo "$DIST/$NAME-$1.zip"; }
file_size() { stat -c %s "$1"; }
human() { awk -v b="$1" 'BEGIN { printf "%d bytes (%.2f MiB)", b, b / 1048576 }'; }

# ---------------------------------------------------------------------------------------------
# deps
# ---------------------------------------------------------------------------------------------

missing_targets() {
	local installed t
	installed="$(rustup target list --installed 2>/dev/null || true)"
	for t in "${TRIPLE[@]}"; do
		grep -qx "$t" <<<"$installed" || echo "$t"
	done
}

# Missing commands (all of REQUIRED_CMDS, or those given) and files, one a line.
missing_cmds() {
	local c cmds=("$@")
	((${#cmds[@]})) || cmds=("${REQUIRED_CMDS[@]}")
	for c in "${cmds[@]}"; do
		command -v "$c" >/dev/null 2>&1 || echo "$c"
	done
	for c in "${!DEB_FOR_FILE[@]}"; do
		[[ -e "$c" ]] || echo "$c"
	done
}

# Debian packages for missing commands/files, deduplicated, one a line.
packages_for() {
	local c
	for c in "$@"; do
		echo "${DEB_FOR[$c]:-${DEB_FOR_FILE[$c]}}"
	done | sort -u
}

cmd_deps() {
	command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (rustup) first"
	command -v rustup >/dev/null 2>&1 ||
		die "rustup not found: install the Rust std for ${TRIPLE[*]} for your toolchain by hand"

	local targets=()
	mapfile -t targets < <(missing_targets)
	if ((${#targets[@]})); then
		log "rustup target add ${targets[*]}"
		rustup target add "${targets[@]}" || die "could not install Rust targets: ${targets[*]}"
		mapfile -t targets < <(missing_targets)
		((${#targets[@]} == 0)) || die "Rust targets still missing: ${targets[*]}"
	fi

	local missing=() pkgs=() sudo=()
	mapfile -t missing < <(missing_cmds)
	if ((${#missing[@]})); then
		mapfile -t pkgs < <(packages_for "${missing[@]}")
		log "missing: ${missing[*]} (Debian packages: ${pkgs[*]})"
		if ((EUID != 0)); then
			command -v sudo >/dev/null 2>&1 ||
				die "missing ${missing[*]}; run as root, or install: apt-get install ${pkgs[*]}"
			sudo=(sudo)
		fi
		command -v apt-get >/dev/null 2>&1 ||
			die "missing ${missing[*]} and no apt-get here; install the equivalents of: ${pkgs[*]}"
		log "apt-get update && apt-get install -y --no-install-recommends ${pkgs[*]}"
		local aptlog
		aptlog="$(mktemp)"
		if ! "${sudo[@]}" apt-get update -qq >"$aptlog" 2>&1 ||
			! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
				"${pkgs[@]}" >>"$aptlog" 2>&1; then
			tail -n 20 "$aptlog" >&2
			die "apt-get failed; install by hand: apt-get install ${pkgs[*]}"
		fi
		rm -f "$aptlog"
		mapfile -t missing < <(missing_cmds)
		((${#missing[@]} == 0)) || die "still missing after install: ${missing[*]}"
	fi
	log "deps OK: rust targets ${TRIPLE[*]}; ${REQUIRED_CMDS[*]}; ${!DEB_FOR_FILE[*]}"
}

# Fail early, with the fix, when a prerequisite is missing (only `deps` installs anything).
# Arguments: the commands this subcommand needs besides the build's own.
require_deps() {
	local missing=()
	mapfile -t missing < <(
		missing_targets
		missing_cmds musl-gcc aarch64-linux-gnu-gcc python3 "$@"
	)
	((${#missing[@]} == 0)) || die "missing ${missing[*]} - run: ./build.sh deps"
}

# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------

# rustc flags that keep local paths out of the binary (panic locations of dependencies,
# build-script output), joined with 0x1f as CARGO_ENCODED_RUSTFLAGS wants. rustc applies the
# last matching prefix, so the target dir (often inside ROOT) comes after ROOT. Any RUSTFLAGS
# from the caller are kept (split on whitespace, as cargo does).
encoded_rustflags() {
	local flags=()
	if [[ -n "${RUSTFLAGS:-}" ]]; then
		read -r -a flags <<<"$RUSTFLAGS"
	fi
	flags+=(
		"--remap-path-prefix=$CARGO_HOME_DIR=/cargo"
		"--remap-path-prefix=$ROOT=/build"
		"--remap-path-prefix=$TARGET_DIR=/target"
	)
	local IFS=$'\x1f'
	printf '%s' "${flags[*]}"
}

cmd_build() {
	require_deps
	build_and_package
}

build_and_package() {
	build_binaries "${ARCHES[@]}"
	mkdir -p "$DIST"
	local a
	for a in "${ARCHES[@]}"; do
		package_zip "$(binary_path "$a")" "$(zip_path "$a")"
	done
	print_sizes
}

# The static musl release binaries of the architectures given (x86_64, arm64).
build_binaries() {
	local cprefix="-ffile-prefix-map=$ROOT=/build -ffile-prefix-map=$TARGET_DIR=/target -ffile-prefix-map=$CARGO_HOME_DIR=/cargo"
	local args=() a
	for a in "$@"; do args+=(--target "${TRIPLE[$a]}"); done

	log "cargo build --release --locked ${args[*]}"
	# One cargo invocation for both targets: the two LTO links run in parallel on two cores.
	env -u RUSTFLAGS \
		CARGO_TARGET_DIR="$TARGET_DIR" \
		CARGO_ENCODED_RUSTFLAGS="$(encoded_rustflags)" \
		CC_x86_64_unknown_linux_musl=musl-gcc \
		CFLAGS_x86_64_unknown_linux_musl="$cprefix" \
		CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
		CFLAGS_aarch64_unknown_linux_musl="$cprefix" \
		CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
		cargo build --release --locked "${args[@]}"
}

# Write a deterministic layer zip holding exactly extensions/$NAME (-rwxr-xr-x).
package_zip() {
	local bin="$1" out="$2"
	[[ -f "$bin" ]] || die "binary not found: $bin"
	python3 - "$bin" "$out" "extensions/$NAME" <<'PY'
import os, sys, zipfile

src, out, arcname = sys.argv[1:4]
with open(src, "rb") as f:
    data = f.read()
info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
info.create_system = 3  # Unix, so unzip/Lambda honour the mode bits below
info.external_attr = 0o100755 << 16  # regular file, rwxr-xr-x
info.compress_type = zipfile.ZIP_DEFLATED
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w") as z:
    z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
os.replace(tmp, out)
PY
}

print_sizes() {
	local a bin zip
	for a in "${ARCHES[@]}"; do
		bin="$(binary_path "$a")"
		zip="$(zip_path "$a")"
		printf '%-7s binary %-58s %s\n' "$a" "${bin#"$ROOT"/}" "$(human "$(file_size "$bin")")"
		printf '%-7s zip    %-58s %s  sha256 %s\n' "$a" "${zip#"$ROOT"/}" "$(human "$(file_size "$zip")")" \
			"$(sha256sum "$zip" | cut -c1-16)"
	done
}

# ---------------------------------------------------------------------------------------------
# size-check
# ---------------------------------------------------------------------------------------------

cmd_size_check() {
	require_deps strip
	build_and_package
	local fail=0 a zip size tmp
	# Measure the x86_64 binary stripped, whatever the profile says.
	tmp="$(mktemp)"
	strip -o "$tmp" "$(binary_path x86_64)"
	size="$(file_size "$tmp")"
	rm -f "$tmp"
	if ((size >= MAX_BINARY_BYTES)); then
		echo "FAIL stripped x86_64 binary: $(human "$size") >= budget $(human "$MAX_BINARY_BYTES")"
		fail=1
	else
		echo "ok   stripped x86_64 binary: $(human "$size") < budget $(human "$MAX_BINARY_BYTES")"
	fi
	for a in "${ARCHES[@]}"; do
		zip="$(zip_path "$a")"
		size="$(file_size "$zip")"
		# budget is 1.2 MiB = 1258291.2 bytes: an integer size is under it iff <= 1258291
		if ((size > MAX_ZIP_BYTES)); then
			echo "FAIL $a zip: $(human "$size") >= budget 1.2 MiB (1258291.2 bytes)"
			fail=1
		else
			echo "ok   $a zip: $(human "$size") < budget 1.2 MiB (1258291.2 bytes)"
		fi
	done
	((fail == 0)) || die "size budget exceeded"
}

# ---------------------------------------------------------------------------------------------
# arm64-smoke
# ---------------------------------------------------------------------------------------------

# Runs a binary (optionally through an emulator) with an environment in which the extension
# cannot reach a Runtime API (connection refused), so it must give up by itself. Prints the
# output; echoes the exit status (124 = timed out).
run_fail_fast() {
	local out="$1"
	shift
	local rc=0
	env -i PATH=/usr/bin:/bin \
		AWS_LAMBDA_RUNTIME_API=127.0.0.1:1 \
		KINESIS_TELEMETRY_STREAM=arm64-smoke \
		AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIDSMOKE AWS_SECRET_ACCESS_KEY=smoke \
		KINESIS_TELEMETRY_ENDPOINT=http://127.0.0.1:1 \
		KINESIS_TELEMETRY_PORT=0 KINESIS_TELEMETRY_BIND_ADDRESS=127.0.0.1 \
		RUST_LOG=info \
		timeout 60 "$@" >"$out" 2>&1 </dev/null || rc=$?
	echo "$rc"
}

cmd_arm64_smoke() {
	require_deps qemu-aarch64-static readelf
	build_and_package
	local work bin native rc_arm rc_x86
	work="$(mktemp -d)"
	SMOKE_WORK="$work"
	trap 'rm -rf "$SMOKE_WORK"' EXIT
	# Take the binary out of the zip that would be deployed, not from target/.
	python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
		"$(zip_path arm64)" "$work/arm64"
	python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
		"$(zip_path x86_64)" "$work/x86_64"
	bin="$work/arm64/extensions/$NAME"
	native="$work/x86_64/extensions/$NAME"
	chmod 0755 "$bin" "$native" # zipfile.extractall does not apply the mode bits

	log "check 1: $bin is an AArch64 ELF, statically linked (no interpreter, no shared libraries)"
	local elf
	elf="$(readelf -h -l -d "$bin")" # captured first: grep -q in a pipe + pipefail can misfire
	grep -q 'Machine:[[:space:]]*AArch64' <<<"$elf" || die "arm64 binary is not AArch64"
	! grep -q 'INTERP' <<<"$elf" || die "arm64 binary asks for a dynamic loader (not static)"
	! grep -q '(NEEDED)' <<<"$elf" || die "arm64 binary needs shared libraries"

	log "check 2: it runs under qemu-aarch64-static and ends by itself when no Runtime API answers"
	rc_arm="$(run_fail_fast "$work/arm64.out" qemu-aarch64-static "$bin")"
	sed 's/^/  arm64 | /' "$work/arm64.out"
	echo "  arm64 exit status: $rc_arm"
	case "$rc_arm" in
	124) die "arm64 binary did not exit within 60 s under qemu" ;;
	125 | 126 | 127) die "qemu could not execute the arm64 binary (status $rc_arm)" ;;
	esac
	((rc_arm < 128)) || die "arm64 binary was killed by signal $((rc_arm - 128)) under qemu"

	log "check 3: the x86_64 binary, run natively the same way, ends with the same status"
	rc_x86="$(run_fail_fast "$work/x86_64.out" "$native")"
	sed 's/^/  x86_64 | /' "$work/x86_64.out"
	echo "  x86_64 exit status: $rc_x86"
	[[ "$rc_arm" == "$rc_x86" ]] || die "arm64 exit status $rc_arm differs from x86_64 status $rc_x86"

	log "check 4: under qemu, a short run in the local sandbox delivers every event to the mock Kinesis"
	cargo build --release -p kte-sandbox --bin sandbox
	KINESIS_TELEMETRY_EXTENSION_BIN="$bin" KINESIS_TELEMETRY_EXTENSION_WRAPPER=qemu-aarch64-static \
		"$TARGET_DIR/release/sandbox" --invocations 20 --lines 5 --progress-every 10 ||
		die "the arm64 binary under qemu did not deliver every event in the sandbox"

	log "check 5: the unit tests pass on arm64 under qemu (TLS handshakes run ring's arm64 code)"
	CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
		CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
		CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static \
		cargo test --target "${TRIPLE[arm64]}" --lib ||
		die "the unit tests fail on arm64 under qemu"

	log "arm64 smoke OK (exit status $rc_arm on both architectures; sandbox run and unit tests passed)"
}

# ---------------------------------------------------------------------------------------------
# release
# ---------------------------------------------------------------------------------------------

# The layer names the SAM template publishes too, so a release is a new version of the same
# layer whichever way it was published.
layer_name() { echo "$NAME-$1"; }

# The package version, from Cargo.toml's [package] table (the first `version =` line).
package_version() { sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1; }

# The date CHANGELOG.md gives the release heading `## [VERSION] - DATE` (empty if none).
changelog_date() {
	sed -n "s/^## \[$(sed 's/\./\\./g' <<<"$1")\] - \(.*\)$/\1/p" "$ROOT/CHANGELOG.md" | head -n 1
}

cmd_release() {
	local allow_dirty=0 arg
	for arg in "$@"; do
		case "$arg" in
		--allow-dirty) allow_dirty=1 ;;
		*) die "release: unknown option $arg (only --allow-dirty)" ;;
		esac
	done
	local version date commit dirty=""
	version="$(package_version)"
	[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "Cargo.toml's version '$version' is not MAJOR.MINOR.PATCH"
	[[ "$(sed -n 's/^## \[\([^]]*\)\].*/\1/p' "$ROOT/CHANGELOG.md" | head -n 1)" == "$version" ]] ||
		die "CHANGELOG.md's newest heading is not ## [$version]: add the release notes first"
	date="$(changelog_date "$version")"
	[[ "$date" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] ||
		die "CHANGELOG.md: date the release first: '## [$version] - $(date -u +%F)' (it says '$date')"
	commit="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null)" || die "release: not a git checkout"
	if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]]; then
		((allow_dirty)) || die "release: the checkout has uncommitted changes (commit them, or --allow-dirty for a trial)"
		dirty=" (with uncommitted changes: a trial, not a release)"
	fi
	local tag="v$version" tagged
	if tagged="$(git -C "$ROOT" rev-parse -q --verify "refs/tags/$tag^{commit}")"; then
		[[ "$tagged" == "$commit" ]] || die "tag $tag exists and names $tagged, not HEAD $commit: bump the version"
	fi

	require_deps
	build_and_package
	local said
	said="$("$(binary_path x86_64)" --version)"
	[[ "$said" == "$NAME $version" ]] || die "the x86_64 binary says '$said', not '$NAME $version'"

	local out="$DIST/release/$version" a zip
	rm -rf "$out"
	mkdir -p "$out"
	for a in "${ARCHES[@]}"; do
		cp "$(zip_path "$a")" "$out/$NAME-$version-$a.zip"
	done
	(cd "$out" && sha256sum -- *.zip >SHA256SUMS && sha256sum --quiet -c SHA256SUMS) ||
		die "could not write or check $out/SHA256SUMS"
	# What a rebuild must match to give the same bytes (docs/releasing.md, "Verifying").
	{
		echo "$NAME $version"
		echo "commit $commit$dirty"
		rustc --version
		cargo --version
		musl-gcc --version 2>&1 | head -n 1 || true
		aarch64-linux-gnu-gcc --version 2>&1 | head -n 1 || true
		if command -v dpkg-query >/dev/null 2>&1; then
			dpkg-query -W -f '${Package} ${Version}\n' musl-tools gcc-aarch64-linux-gnu libc6-dev-arm64-cross 2>/dev/null || true
		fi
	} >"$out/BUILD-INFO"

	echo
	echo "Release $version of $NAME, commit $commit$dirty, $date"
	echo "Files in ${out#"$ROOT"/}/ (a rebuild of this commit with the toolchain in BUILD-INFO gives the same bytes):"
	sed 's/^/  /' "$out/SHA256SUMS"
	sed 's/^/  BUILD-INFO: /' "$out/BUILD-INFO"
	echo
	echo "Publish (each command prints the new layer version's ARN; add --region to choose a region)."
	echo "No --compatible-runtimes: the extension is a static binary that runs beside every runtime,"
	echo "and a runtimes list would only hide the layer from the console's filter for the others."
	for a in "${ARCHES[@]}"; do
		cat <<-CMD

			aws lambda publish-layer-version \\
			  --layer-name $(layer_name "$a") \\
			  --description '$NAME $version ($a, static musl): Lambda telemetry to Kinesis Data Streams' \\
			  --license-info Apache-2.0 \\
			  --compatible-architectures $a \\
			  --zip-file fileb://$out/$NAME-$version-$a.zip \\
			  --query LayerVersionArn --output text
		CMD
	done
	echo
	echo "Then tag the commit the zips were built from:"
	echo "  git tag -a $tag -m '$NAME $version' $commit && git push origin $tag"
}

# ---------------------------------------------------------------------------------------------
# local, bench: the sandbox
# ---------------------------------------------------------------------------------------------

# The sandbox (binary `sandbox` of the kte-sandbox crate, tests/sandbox/src/bin/sandbox) runs
# the release extension next to it in target/release/; `cargo run` would not build that, so
# both are built first, in one invocation (one feature resolution, as for the layer build).
run_sandbox() {
	cargo build --release --workspace --bin "$NAME" --bin sandbox
	exec "$TARGET_DIR/release/sandbox" "$@"
}
cmd_local() { run_sandbox "$@"; }

# The benchmarks measure what ships: the static musl x86_64 binary of the layer (built here,
# or brought up to date), unless the caller names another one with --binary PATH or
# KINESIS_TELEMETRY_EXTENSION_BIN (e.g. target/release/kinesis-telemetry-extension, the host
# build `./build.sh local` runs).
cmd_bench() {
	local a
	for a in "$@"; do
		[[ "$a" != --binary ]] || run_sandbox --bench "$@"
	done
	if [[ -z "${KINESIS_TELEMETRY_EXTENSION_BIN:-}" ]]; then
		local missing=()
		mapfile -t missing < <(
			missing_targets | grep -x "${TRIPLE[x86_64]}"
			missing_cmds musl-gcc | grep -v '^/'
		)
		((${#missing[@]} == 0)) ||
			die "the shipped binary needs ${missing[*]} to build - run: ./build.sh deps (or measure another build: KINESIS_TELEMETRY_EXTENSION_BIN=PATH ./build.sh bench)"
		build_binaries x86_64
		KINESIS_TELEMETRY_EXTENSION_BIN="$(binary_path x86_64)"
		export KINESIS_TELEMETRY_EXTENSION_BIN
	fi
	log "benchmarking $KINESIS_TELEMETRY_EXTENSION_BIN"
	cargo build --release -p kte-sandbox --bin sandbox
	exec "$TARGET_DIR/release/sandbox" --bench "$@"
}

# ---------------------------------------------------------------------------------------------
# test
# ---------------------------------------------------------------------------------------------

cmd_test() {
	# Test peers: a venv in .venv with moto[server] (a real Kinesis implementation with IAM
	# auth, for tests/moto.rs) and cfn-lint (for template.yml).
	bash "$ROOT/.ci/python-tools.sh"
	# --workspace: the test-support and sandbox crates' own tests too (once, not per test binary).
	if cargo nextest --version >/dev/null 2>&1; then
		cargo nextest run --workspace --no-fail-fast "$@"
	else
		cargo test --workspace --no-fail-fast "$@"
	fi
	bash "$ROOT/.ci/cfn-lint.sh"
}

# ---------------------------------------------------------------------------------------------
# fuzz
# ---------------------------------------------------------------------------------------------

cmd_fuzz() {
	local seconds="${1:-60}"
	[[ $# -eq 0 ]] || shift
	[[ "$seconds" =~ ^[0-9]+$ ]] || die "fuzz: SECONDS must be a whole number, not '$seconds'"
	if ! cargo fuzz --version >/dev/null 2>&1; then
		log "cargo install cargo-fuzz --locked (crates.io)"
		cargo install cargo-fuzz --locked || die "could not install cargo-fuzz"
	fi
	# cargo-fuzz passes nightly-only flags (-Z sanitizer...). A nightly toolchain if rustup
	# has one; otherwise stable, told to accept them.
	local toolchain=()
	if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
		toolchain=(+nightly)
	else
		export RUSTC_BOOTSTRAP=1
	fi
	local targets=("$@")
	((${#targets[@]})) || mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
	((${#targets[@]})) || die "fuzz: no targets found in fuzz/"
	# Per-target libFuzzer flags. listener_requests drives a real listener whose threads
	# outlive each input, so LeakSanitizer would report their buffers.
	local -A flags=([listener_requests]="-detect_leaks=0")
	local t out failed=() summary=() extra=()
	for t in "${targets[@]}"; do
		read -r -a extra <<<"${flags[$t]:-}"
		mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
		out="$(mktemp)"
		log "fuzz $t for ${seconds} s ${flags[$t]:-}"
		# -timeout: one input taking 10 s is a finding (a hang); -rss_limit_mb: so is 2 GB.
		if cargo "${toolchain[@]}" fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
			-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
			"${extra[@]}" >"$out" 2>&1; then
			summary+=("ok    $t: $(fuzz_stats "$out")")
		else
			tail -n 40 "$out" >&2
			summary+=("FAIL  $t: $(fuzz_stats "$out") (see fuzz/artifacts/$t)")
			failed+=("$t")
		fi
		rm -f "$out"
	done
	printf '%s\n' "${summary[@]}"
	((${#failed[@]} == 0)) || die "fuzz: findings in ${failed[*]}"
}

# "N execs, cov C, corpus K" from a libFuzzer log.
fuzz_stats() {
	awk '/^Done [0-9]+ runs/ { runs = $2 }
		/ cov: / { for (i = 1; i <= NF; i++) { if ($i == "cov:") cov = $(i + 1); if ($i == "corp:") corp = $(i + 1) } }
		END { printf "%s execs, cov %s, corpus %s", runs ? runs : "?", cov ? cov : "?", corp ? corp : "?" }' "$1"
}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print } /^set /{ exit }' "$0"; }

main() {
	local cmd="${1:-build}"
	[[ $# -eq 0 ]] || shift
	case "$cmd" in
	build) cmd_build ;;
	deps) cmd_deps ;;
	size-check) cmd_size_check ;;
	arm64-smoke) cmd_arm64_smoke ;;
	local) cmd_local "$@" ;;
	bench) cmd_bench "$@" ;;
	test) cmd_test "$@" ;;
	release) cmd_release "$@" ;;
	fuzz) cmd_fuzz "$@" ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		die "unknown subcommand: $cmd"
		;;
	esac
}

main "$@"
