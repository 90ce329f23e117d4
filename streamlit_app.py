"""singtalk app router: page config and navigation only."""

import streamlit as st

st.set_page_config(page_title="singtalk", page_icon="🎤", layout="wide")
st.title("singtalk")
st.write("Tell talking from singing in any audio.")
