# SPDX-License-Identifier: Apache-2.0
"""The repository documents itself: no tracked file points to documents kept
outside it or to directories of the machine it was written on, every folder
with C sources has its README.md, and every relative link in the markdown
files leads to a tracked file (and, with #anchor, to a heading of it).

These read the git index and the files only; no process is started.
"""
import re
import subprocess
from pathlib import Path

import navetest as nt

ROOT = nt.ROOT

# Built from pieces so that this file does not match itself.
OUTSIDE = [
    "DESIGN" + ".md",
    ".." + "/shared",
    "shared" + "/DESIGN",
]
# An absolute path of the machines nave is developed on (the work tree and
# root's home), not inside a word or a URL path.
MACHINE_PATH = re.compile(rb"(?<![\w.~/-])/(?:wor" + rb"k|roo" + rb"t)/")


def tracked():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                         check=True).stdout
    return [f for f in out.decode().split("\0") if f]


def test_no_pointers_outside_the_repository():
    bad = []
    for f in tracked():
        path = ROOT / f
        if not path.is_file():
            continue  # deleted in the work tree
        data = path.read_bytes()
        for needle in OUTSIDE:
            for m in re.finditer(re.escape(needle.encode()), data):
                line = data.count(b"\n", 0, m.start()) + 1
                bad.append(f"{f}:{line}: mentions {needle}")
        for m in MACHINE_PATH.finditer(data):
            line = data.count(b"\n", 0, m.start()) + 1
            bad.append(f"{f}:{line}: absolute path of this machine: "
                       f"{data[m.start():m.start() + 40]!r}")
    assert not bad, "\n".join(bad)


def test_every_folder_with_c_sources_has_a_readme():
    files = set(tracked())
    folders = {str(Path(f).parent) for f in files if f.endswith((".c", ".h"))}
    assert folders, "no C sources found"
    missing = sorted(d for d in folders if f"{d}/README.md" not in files and
                     not (d == "." and "README.md" in files))
    assert not missing, f"folders with C sources but no tracked README.md: {missing}"


# ---------------------------------------------------------------- links

LINK = re.compile(r"(?<!\!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]\n]*\]\(([^)\s]+)\)")
REFDEF = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*(\S+)", re.M)
FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def links(text):
    text = FENCE.sub("", text)
    text = CODE.sub("", text)
    for rx in (LINK, IMAGE, REFDEF):
        for m in rx.finditer(text):
            yield m.group(1).strip("<>")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    h = re.sub(r"[`*_]", "", heading.strip().lower())
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(md):
    text = FENCE.sub("", md.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def test_relative_markdown_links_resolve():
    files = set(tracked())
    dirs = {str(p) for f in files for p in Path(f).parents}
    bad, seen = [], 0
    for f in sorted(x for x in files if x.endswith(".md")):
        md = ROOT / f
        for target in links(md.read_text()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # http:, https:, mailto: ...
            seen += 1
            path, _, anchor = target.partition("#")
            if not path:
                dest = md
            else:
                dest = (md.parent / path).resolve()
                try:
                    rel = str(dest.relative_to(ROOT.resolve()))
                except ValueError:
                    bad.append(f"{f}: link {target} leaves the repository")
                    continue
                if rel not in files and rel not in dirs:
                    bad.append(f"{f}: link {target}: {rel} is not a tracked file or folder")
                    continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{f}: link {target}: no heading #{anchor} in {dest.name}")
    assert not bad, "\n".join(bad)
    assert seen > 10, "the link scanner found almost no relative links"
