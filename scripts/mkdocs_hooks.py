"""The site build's hook (``hooks:`` in ``mkdocs.yml``): the drawing page's data, written into the built site.

``javascripts/demo/data.js`` sets ``window.LR_DEMO_DATA`` to :func:`lr_from_scratch.demo.page_data` of the
docs' run (``make figures`` puts its model and metrics in ``docs/figures/training``) and the test images
``python -m lr_from_scratch.demo`` picked for the page. A script rather than JSON, so that the page reads it
from ``file://`` too, where a browser refuses to fetch files.
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.exceptions import PluginError

from lr_from_scratch.demo import EXAMPLES, page_data
from lr_from_scratch.errors import UserError

DATA_JS = Path("javascripts") / "demo" / "data.js"


def on_post_build(config, **kwargs) -> None:
    figures = Path(config["docs_dir"]) / "figures"
    try:
        data = page_data(
            figures / "training" / "model.npz", figures / "training" / "metrics.json", figures / "demo" / EXAMPLES
        )
    except UserError as error:
        raise PluginError(f"the drawing page's data: {error}; make figures writes what it needs") from None
    path = Path(config["site_dir"]) / DATA_JS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"window.LR_DEMO_DATA = {json.dumps(data)};\n")
