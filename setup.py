from setuptools import setup

setup()  # metadata in setup.cfg; this file lets Dataflow workers install the package (--setup_file ./setup.py)
