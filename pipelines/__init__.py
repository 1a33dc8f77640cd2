"""Beam transforms and pipeline assembly. The only package that imports apache_beam."""
