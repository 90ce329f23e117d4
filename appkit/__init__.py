"""Streamlit helpers shared by the pages (cached resources, job panels, result views).

Unlike :mod:`singtalk`, this package may import streamlit; it holds no model or
audio logic of its own.
"""
