"""Classify: upload a file, record, listen live, or paste a link."""

from __future__ import annotations

import json
import os
import time

import streamlit as st

from appkit import examples, line, resources, results
from appkit.live import (MICROPHONE_TEXTS, NO_AUDIO_TEXT, LiveBuffer, connection_failure, is_quiet, loop_kept_awake,
                         meter_reading, no_audio, server_event_loop, trouble_text)
from singtalk import audio
from singtalk.errors import SilentAudio, SingtalkError, TooLong, TooShort
from singtalk.sources import is_url

RECORD_MAX_S = 60.0
LIVE_WINDOW_S = 4.0
ICE_ENV = "SINGTALK_ICE_SERVERS"  # JSON list; "[]" for loopback-only (tests)

st.header("Singing, talking, or no voice?")
st.caption(f"Give it at least {audio.format_seconds(audio.MIN_DURATION_S)} of voice (quiet parts more than "
           f"{audio.TRIM_TOP_DB:.0f} dB below the peak are trimmed first).")
with st.expander("What to expect"):
    st.markdown(results.WHAT_TO_EXPECT)

with st.container(border=True):
    st.markdown("**Try an example**")
    shown = examples.available()
    for column, example in zip(st.columns(max(len(shown), 1)), shown):
        if column.button(example.title, key=f"example-{example.file}", width="stretch"):
            st.session_state["example-take"] = example.file
    st.caption(examples.CREDITS)
    chosen = examples.find(st.session_state.get("example-take"))
    if chosen is not None:
        results.classify_and_show(f"example:{chosen.file}", examples.read(chosen.file), show_key="example",
                                  name=chosen.file, separate=False)

upload_tab, record_tab, live_tab, link_tab = st.tabs(["Upload", "Record", "Live", "Link"])

with upload_tab:
    upload = st.file_uploader(
        "Audio or video file", key="upload",
        help="Anything ffmpeg reads: WAV, FLAC, MP3, OGG/Opus, M4A/AAC, WebM, MP4, MKV…",
    )
    separate_upload = st.checkbox("Extract vocals with Spleeter first", value=False, key="upload-separate",
                                  help=results.SEPARATE_HELP)
    if upload is not None:
        results.classify_and_show(f"upload:{upload.file_id}", upload, show_key="upload", stages=separate_upload,
                                  name=upload.name, separate=separate_upload)

with record_tab:
    st.caption(f"Record between {audio.format_seconds(audio.MIN_DURATION_S)} of voice and "
               f"{audio.format_seconds(RECORD_MAX_S)}. Sing a few notes or say a sentence.")
    recording = st.audio_input("Record from your microphone", key="record")
    separate_record = st.checkbox("Extract vocals with Spleeter first", value=False, key="record-separate",
                                  help=results.SEPARATE_HELP)
    if recording is not None:
        def too_long(err: SingtalkError) -> str:
            if isinstance(err, TooLong):
                return f"Recordings are limited to {audio.format_seconds(RECORD_MAX_S)}; record a shorter take."
            return f"{err} Record again, a little longer and closer to the microphone."

        results.classify_and_show(f"record:{recording.file_id}", recording, show_key="record",
                                  stages=separate_record, name="the recording", separate=separate_record,
                                  max_duration=RECORD_MAX_S, describe_error=too_long)

with live_tab:
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    if "live-buffer" not in st.session_state:
        st.session_state["live-buffer"] = LiveBuffer(seconds=RECORD_MAX_S)
    buffer: LiveBuffer = st.session_state["live-buffer"]
    ice = json.loads(os.environ.get(ICE_ENV, '[{"urls": "stun:stun.l.google.com:19302"}]'))
    st.caption(f"Press START and sing or talk: the meter labels the last {LIVE_WINDOW_S:.0f} s every second.")
    ctx = None
    try:
        with loop_kept_awake(server_event_loop()):
            ctx = webrtc_streamer(
                key="live",
                mode=WebRtcMode.SENDONLY,
                audio_frame_callback=buffer.push_frame,
                media_stream_constraints={"audio": {"echoCancellation": False, "noiseSuppression": False,
                                                    "autoGainControl": False}, "video": False},
                frontend_rtc_configuration={"iceServers": ice},
                server_rtc_configuration={"iceServers": ice},
                translations=MICROPHONE_TEXTS,
            )
    except Exception as err:  # streamlit-webrtc raises its own TimeoutError and aiortc's errors here
        st.warning(connection_failure(err))
    with st.expander("The microphone does not start?"):
        st.markdown(trouble_text())
    playing = bool(ctx and ctx.state.playing)
    if playing:  # when START took effect, and how much audio had arrived by then
        st.session_state.setdefault("live-started", (time.monotonic(), buffer.received_seconds))
    else:
        st.session_state.pop("live-started", None)

    @st.fragment(run_every=1.0 if playing else None)
    def live_meter():
        if not (ctx and ctx.state.playing):
            st.caption(f"Captured: {audio.format_seconds(buffer.seconds)}" if buffer.seconds else "Not listening.")
            return
        y = buffer.last(LIVE_WINDOW_S)
        if y.size < LIVE_WINDOW_S * audio.SAMPLE_RATE * 0.5:
            if no_audio(st.session_state.get("live-started"), buffer, time.monotonic()):
                st.warning(NO_AUDIO_TEXT)
            else:
                st.markdown("Live: **listening…**")
            return
        served = line.line().try_serve()  # the meter skips a beat rather than queue behind uploads
        if served is None:
            st.caption("Live: the server is busy with other visitors; the meter resumes in a moment.")
            return
        try:
            with served:
                p = None if is_quiet(y) else resources.classifier().classify(y)
        except (SilentAudio, TooShort):  # too little sound: between takes
            p = None
        except SingtalkError as err:
            st.markdown(f"Live: {err}")
            return
        # One element, so the label and the bar never disagree between two redraws.
        fraction, text = meter_reading(p)
        st.progress(fraction, text=text)

    live_meter()
    left, right = st.columns(2)
    classify_all = left.button("Classify everything captured", key="live-all",
                               help=f"Up to the last {audio.format_seconds(RECORD_MAX_S)}.")
    if right.button("Clear", key="live-clear"):
        buffer.clear()
        st.session_state.pop("live-started", None)
        st.session_state.pop("result:live", None)
        st.session_state.pop("live-take", None)
    if classify_all:
        if buffer.seconds == 0:
            st.info("Nothing captured yet: press START and let it listen for a few seconds.")
        else:
            st.session_state["live-take"] = (f"live:{buffer.received_seconds:.2f}", buffer.last())
    take = st.session_state.get("live-take")
    if take is not None:
        with st.spinner("Classifying…"):
            result = results.classify(take[0], take[1], name="the live capture", separate=False)
        if result:
            results.show(result, key="live")

with link_tab:
    with st.form("link-form", border=False):
        url = st.text_input("Link to a video or audio page", placeholder="https://www.youtube.com/watch?v=…",
                            key="link-url")
        separate_link = st.checkbox("Extract vocals with Spleeter first", value=True, key="link-separate",
                                    help="On by default: songs found on the web come with instruments. "
                                         + results.SEPARATE_HELP)
        go = st.form_submit_button("Classify link", type="primary")
    if go:
        url = (url or "").strip()
        if not is_url(url):
            st.error("Paste a full link, starting with http:// or https://.")
            st.session_state.pop("link-take", None)
        else:
            st.session_state["link-take"] = (url, separate_link)
    take = st.session_state.get("link-take")
    if take is not None:
        url, separate_link = take
        # A new link clears the previous link's result at once; its stages (download, decode…) are named as they run.
        if results.classify_and_show(f"link:{url}", url, show_key="link", stages=True, name=url,
                                     separate=separate_link) is None:
            st.session_state.pop("link-take", None)  # do not download again on the next click
