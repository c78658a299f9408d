#!/usr/bin/env python3
"""Builds the backport benchmark fixture: an upstream repository with 6 release lines
(tags v0.1.0 .. v0.6.0), 50 fix commits on top of the newest line, one patch queue per line,
and a distro.toml. Prints the fix commit ids, one per line, on stdout.

Fix i touches its own file src/fNN.rs; i % 5 picks what the older lines look like:
  0  identical everywhere           -> applied cleanly on every line
  1  a context line changed in 0.4  -> three-way merge on 0.1-0.3
  2  the fixed line changed in 0.3  -> conflict on 0.1-0.2 (with a prerequisite)
  3  Affected-Versions: >=0.4.0     -> not affected on 0.1-0.3
  4  fixed already on maint-0.1     -> already present on 0.1
"""
import os
import subprocess
import sys

root = os.path.abspath(sys.argv[1])
up = os.path.join(root, "upstream")
os.makedirs(up)
subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q"], cwd=up, check=True)
env = dict(os.environ, GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.org",
           GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.org")


def git(*args):
    return subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false",
                           "-c", "tag.gpgsign=false", *args], cwd=up, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


N = 50
state = {}


def content(i, ctx="    // context", body="    let v = input[0];"):
    lines = [f"//! Module {i}.", "", f"pub fn f{i}(input: &[u8]) -> u8 {{", "    // step 1",
             ctx, "    // step 2", body, "    // step 3", "    v", "}", ""]
    lines += [f"// filler {k}" for k in range(10)]
    return "\n".join(lines) + "\n"


def write_all(files):
    for path, text in files.items():
        full = os.path.join(up, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)


def commit(msg):
    git("add", "-A")
    git("commit", "-q", "-m", msg)


write_all({f"src/f{i:02}.rs": content(i) for i in range(N)})
write_all({"Cargo.toml": "[package]\nname = \"bench\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"})
commit("Initial import")
git("tag", "v0.1.0")
for minor in range(2, 7):
    if minor == 3:
        write_all({f"src/f{i:02}.rs": content(i, body="    let v = *input.first().unwrap_or(&0) as u8;")
                   for i in range(N) if i % 5 == 2})
        commit("Rework input access")
    if minor == 4:
        write_all({f"src/f{i:02}.rs": content(i, ctx="    // context (documented)")
                   for i in range(N) if i % 5 == 1})
        commit("Document context")
    write_all({"Cargo.toml": f"[package]\nname = \"bench\"\nversion = \"0.{minor}.0\"\nedition = \"2021\"\n"})
    commit(f"Release 0.{minor}.0")
    git("tag", f"v0.{minor}.0")

fixed_body = "    let Some(&v) = input.first() else { return 0 };"
commits = []
for i in range(N):
    ctx = "    // context (documented)" if i % 5 == 1 else "    // context"
    old = content(i, ctx=ctx, body="    let v = *input.first().unwrap_or(&0) as u8;" if i % 5 == 2 else "    let v = input[0];")
    new = old.replace("    let v = input[0];", fixed_body).replace("    let v = *input.first().unwrap_or(&0) as u8;", fixed_body)
    write_all({f"src/f{i:02}.rs": new})
    affected = ">=0.4.0" if i % 5 == 3 else ">=0.1.0"
    commit(f"Fix f{i} on empty input\n\nOrigin: upstream\nAdvisories: CVE-2026-{1000 + i}\n"
           f"Severity: medium\nAffected-Versions: {affected}\n")
    commits.append(git("rev-parse", "HEAD"))

# maint-0.1: the 0.1 line already carries the i % 5 == 4 fixes.
git("checkout", "-q", "-b", "maint-0.1", "v0.1.0")
write_all({f"src/f{i:02}.rs": content(i, body=fixed_body) for i in range(N) if i % 5 == 4})
commit("Early fixes on 0.1")
git("checkout", "-q", "main")

toml = ["[distribution]", "name = \"bench\"", "vendor = \"Bench\"", "",
        "[[component]]", "name = \"bench\"", "package = \"bench\"", "binary = \"bench\"",
        "fips_required = false"]
for minor in range(1, 7):
    ref = "maint-0.1" if minor == 1 else f"v0.{minor}.0"
    q = os.path.join(root, "patches", f"0.{minor}")
    os.makedirs(q)
    open(os.path.join(q, "series"), "w").close()
    toml += ["", "[[line]]", f"version = \"0.{minor}\"", f"release_date = 2026-0{minor}-01",
             f"source = {{ git = \"../upstream\", ref = \"{ref}\" }}", f"patches = \"../patches/0.{minor}\""]
os.makedirs(os.path.join(root, "distro"))
with open(os.path.join(root, "distro", "distro.toml"), "w") as f:
    f.write("\n".join(toml) + "\n")
print("\n".join(commits))
