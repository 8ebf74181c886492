"""Rebuild README.md from its sections: `python docs/assemble_readme.py` (keeps the two commands first)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["_core_top.md", "losses.md", "strategies.md", "kernels.md", "_benchmarks.md", "_core_bottom.md",
         "_limitations.md"]


def main() -> None:
    readme = ROOT / "README.md"
    head = readme.read_text().split("<!-- SECTIONS -->")[0]
    parts = []
    for name in ORDER:
        text = (ROOT / "docs" / name).read_text().strip()
        parts.append(text)
    readme.write_text(head + "<!-- SECTIONS -->\n\n" + "\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
