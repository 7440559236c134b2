"""What only the notebooks use: ipywidgets panels (widgets), quiz checks (quiz), the explorers (explorers/) and the
memo of finished fine-tunes, embeddings and probes (memo). Nothing in the package imports this sub-package."""
