"""Sphinx configuration of the course site (`make site`): the lessons as committed, outputs and figures kept,
nothing executed; built offline (furo bundles its assets; MathJax 3 comes from npm, not a CDN)."""


project = "ftcourse"
author = "the ftcourse developers"
copyright = "2026, the ftcourse developers"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
nb_execution_mode = "off"  # the committed outputs are the lesson's; the site never re-runs a cell
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "myst.xref_missing", "misc.highlighting_failure"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "furo"
html_title = "ftcourse: fine-tuning a pretrained CNN, from the gradient up"
html_static_path = ["_static"]
html_show_sourcelink = False
mathjax_path = "mathjax/tex-chtml.js"  # copied into _static by scripts/build_site.py
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "description"
