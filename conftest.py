"""Root pytest configuration: applies to the unit tests and to the notebooks nbmake executes in this process.

It installs :func:`tests.nbclient_polling.patch_nbclient`: without it a notebook cell with ipywidgets sometimes
waits for its execute reply until the cell timeout (jupyter/nbclient#312).
"""

from tests.nbclient_polling import patch_nbclient

patch_nbclient()
