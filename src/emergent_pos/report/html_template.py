"""An HTML template for ``dvc plots show/diff`` that renders with no network.

DVC's default page loads vega, vega-lite and vega-embed from a CDN. This template inlines
the bundle that the installed ``vl-convert-python`` package ships, so the page works
offline; it is generated at set-up (``./run.sh``) rather than committed, and
``.dvc/config`` points ``plots.html_template`` at it.

    python -m emergent_pos.report.html_template .dvc/plots_template.html
"""

from __future__ import annotations

import sys
from pathlib import Path

from emergent_pos.io.files import atomic_path

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots (offline)</title>
    <script type="text/javascript">
{bundle}
    </script>
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template() -> str:
    """The page, with ``{plot_divs}`` and ``{refresh_tag}`` left for DVC to fill in."""
    import vl_convert

    # the default bundle assigns vegaEmbed, vegaLite and vega to window, as the CDN scripts do
    bundle = vl_convert.javascript_bundle()
    return PAGE.format(bundle=bundle, refresh_tag="{refresh_tag}", plot_divs="{plot_divs}")


def main(argv: list[str]) -> None:
    target = Path(argv[1] if len(argv) > 1 else ".dvc/plots_template.html")
    with atomic_path(target) as tmp:
        tmp.write_text(template())


if __name__ == "__main__":
    main(sys.argv)
