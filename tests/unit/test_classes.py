"""classes.py: the merge rules, the choice of class, the refusal messages; no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from rtc_recording.api import names
from rtc_recording.api.recording import RtcRecordingSpec, spec_errors
from rtc_recording.decide import classes
from rtc_recording.decide.classes import InvalidClassSpec, NoClass, RecordingClass, Refuse, Use, choose, merge

OSS = {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": "class-bucket"}}
TRANSCODE = {
    "audioBitrateKbps": 64,
    "audioChannels": 2,
    "audioSampleRateHz": 48000,
    "videoBitrateKbps": 1500,
    "videoFramerate": 25,
    "videoGop": 50,
}
LAYOUT = {"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1", "height": "1"}]}


def klass(name="gold", selector=None, default=False, created="2026-01-01T00:00:00Z", **spec) -> RecordingClass:
    meta = {"name": name, "generation": 3, "creationTimestamp": created}
    if default:
        meta["annotations"] = {names.DEFAULT_CLASS_ANNOTATION: "true"}
    return RecordingClass.of({"metadata": meta, "spec": {"namespaceSelector": selector or {}, **spec}})


def own(**spec) -> dict:
    """A resource's spec naming class gold; a field given as None is left out."""
    base = {
        "recordingClassName": "gold",
        "appId": "demo-app",
        "channelId": "c",
        "mode": "Mixed",
        "subscribers": [{"userId": "alice"}],
        "layout": LAYOUT,
        **spec,
    }
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    "defaults, resource, expected",
    [
        # scalars: the resource wins
        ({"maxIdleSeconds": 60}, {"maxIdleSeconds": 30}, {"maxIdleSeconds": 30}),
        ({"maxIdleSeconds": 60}, {}, {"maxIdleSeconds": 60}),
        # objects merge key by key
        (
            {"transcode": {"audioChannels": 2, "videoGop": 50}},
            {"mode": "Mixed", "transcode": {"videoGop": 25}},
            {"mode": "Mixed", "transcode": {"audioChannels": 2, "videoGop": 25}},
        ),
        (
            {"layout": {"background": {"url": "https://x/bg.png"}}},
            {"mode": "Mixed", "layout": {"panes": [{"userId": "a"}]}},
            {"mode": "Mixed", "layout": {"background": {"url": "https://x/bg.png"}, "panes": [{"userId": "a"}]}},
        ),
        # ... where the mode and media allow them
        (
            {"transcode": {"audioChannels": 2, "videoGop": 50}, "layout": {"background": {"url": "https://x/bg.png"}}},
            {"mode": "Mixed", "media": "Audio"},
            {"mode": "Mixed", "media": "Audio", "transcode": {"audioChannels": 2}},
        ),
        (
            {
                "transcode": {"audioChannels": 2},
                "storage": {"files": [{"format": "MP4", "fileNamePattern": "{StartTime}"}]},
            },
            {"mode": "Individual"},
            {"mode": "Individual", "storage": {"files": [{"format": "MP4"}]}},
        ),
        # lists are replaced whole
        (
            {"notify": {"fileUploadedFormats": ["HLS", "MP4"]}},
            {"notify": {"fileUploadedFormats": ["MP3"]}},
            {"notify": {"fileUploadedFormats": ["MP3"]}},
        ),
        # ... except storage.files, merged by format, entries key by key; pathPrefix inside is a list
        (
            {
                "storage": {
                    **OSS,
                    "files": [{"format": "HLS", "pathPrefix": ["a"], "sliceDurationSeconds": 10}, {"format": "MP4"}],
                }
            },
            {"storage": {"files": [{"format": "MP3"}, {"format": "HLS", "pathPrefix": ["b", "c"]}]}},
            {
                "storage": {
                    **OSS,
                    "files": [
                        {"format": "HLS", "pathPrefix": ["b", "c"], "sliceDurationSeconds": 10},
                        {"format": "MP4"},
                        {"format": "MP3"},
                    ],
                }
            },
        ),
        # oss and vod are one choice: the resource's oss replaces the class's oss entirely
        (
            {"storage": {**OSS, "files": [{"format": "MP4"}]}},
            {"storage": {"oss": {"endpoint": "oss-cn-shanghai-internal.aliyuncs.com", "bucket": "mine"}}},
            {
                "storage": {
                    "oss": {"endpoint": "oss-cn-shanghai-internal.aliyuncs.com", "bucket": "mine"},
                    "files": [{"format": "MP4"}],
                }
            },
        ),
        # ... and the resource's vod drops the class's oss and files
        (
            {"storage": {**OSS, "files": [{"format": "MP4"}]}},
            {"storage": {"vod": {"autoCompose": False}}},
            {"storage": {"vod": {"autoCompose": False}}},
        ),
        # recordingClassName never reaches the effective spec; fields a class may not set are ignored
        ({"appId": "class-app", "region": "cn-shanghai"}, {"recordingClassName": "gold"}, {"region": "cn-shanghai"}),
    ],
)
def test_merge(defaults, resource, expected):
    assert merge(defaults, resource) == expected


def test_merge_copies():
    defaults = {"storage": {**OSS}}
    merged = merge(defaults, {"storage": {"files": [{"format": "MP4"}]}})
    merged["storage"]["oss"]["bucket"] = "changed"
    assert defaults["storage"]["oss"]["bucket"] == "class-bucket"


@pytest.mark.parametrize(
    "selector, labels, ok",
    [
        ({}, {}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}, {"team": "b"}, True),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {"team": "a"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {"team": ""}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {"team": ""}, False),
    ],
)
def test_selector(selector, labels, ok):
    assert classes.selector_matches(selector, labels) is ok


def test_choose():
    gold = klass(selector={"matchLabels": {"tier": "gold"}})
    assert choose("gold", gold, None, "ns", {"tier": "gold"}) == Use(gold)
    refused = choose("gold", gold, None, "ns", {"tier": "free"})
    assert isinstance(refused, Refuse) and refused.reason == "ClassNotAllowed" and not refused.retry
    assert "namespace ns" in refused.message and "gold" in refused.message
    missing = choose("gold", None, None, "ns", {})
    assert isinstance(missing, Refuse) and missing.reason == "ClassNotFound" and missing.retry


def test_the_default_class_is_the_newest_annotated_one_whose_selector_matches():
    old = klass("old", default=True, created="2026-01-01T00:00:00Z")
    new = klass("new", default=True, created="2026-02-01T00:00:00Z")
    elsewhere = klass("elsewhere", default=True, created="2026-03-01T00:00:00Z", selector={"matchLabels": {"a": "b"}})
    plain = klass("plain", created="2026-04-01T00:00:00Z")
    assert choose(None, None, [old, new, elsewhere, plain], "ns", {}) == Use(new)
    assert choose(None, None, [plain], "ns", {}) == NoClass()


def test_pin_and_validate():
    gold = klass(
        storage=OSS,
        transcode=TRANSCODE,
        region="cn-shanghai",
        maxDurationSeconds=600,
        credentialsSecretRef={"namespace": "platform", "name": "aliyun"},
    )
    pin = gold.pin()
    assert pin["credentialsSecretRef"] == {"namespace": "platform", "name": "aliyun"}
    assert pin["generation"] == 3 and pin["defaults"]["maxDurationSeconds"] == 600
    spec = classes.validate(own(), pin)
    assert spec.storage.oss.bucket == "class-bucket" and spec.recording_class_name is None
    assert spec.transcode.video_bitrate_kbps == 1500


def test_a_merged_spec_that_breaks_a_rule_names_the_class_and_who_set_the_field():
    gold = klass(storage={"oss": {"endpoint": "oss-ap-southeast-1.aliyuncs.com", "bucket": "b-1"}}, transcode=TRANSCODE)
    with pytest.raises(InvalidClassSpec) as refused:
        classes.validate(own(region="cn-shanghai"), gold.pin())
    message = str(refused.value)
    assert "RtcRecordingClass gold (generation 3)" in message
    assert "spec.storage.oss.endpoint must be in spec.region (cn-shanghai)" in message
    # a missing field, set by neither
    with pytest.raises(InvalidClassSpec) as refused:
        classes.validate(own(), klass(transcode=TRANSCODE).pin())
    assert "spec.storage is required" in str(refused.value)
    # the resource's partial storage against the class's: files are OSS only
    with pytest.raises(InvalidClassSpec) as refused:
        classes.validate(
            own(storage={"files": [{"format": "MP4"}]}), klass(storage={"vod": {}}, transcode=TRANSCODE).pin()
        )
    assert "spec.storage.files is only valid with spec.storage.oss" in str(refused.value)
    assert "spec.storage.files: set by the RtcRecording" in str(refused.value)


def test_field_provenance():
    pin = klass(storage=OSS).pin()
    assert classes._who("spec.storage.oss.bucket", {}, pin) == "set by RtcRecordingClass gold"
    assert classes._who("spec.subscribers[0].userId", own(), pin) == "set by the RtcRecording"
    assert classes._who("spec.transcode", own(), pin).startswith("set by neither")


def test_account_fields_prefer_the_resources_own():
    pin = {"defaults": {"region": "ap-southeast-1"}, "credentialsSecretRef": {"namespace": "platform", "name": "k"}}
    obj = {"metadata": {"namespace": "t"}, "spec": {}, "status": {"recordingClass": pin}}
    assert classes.account_fields(obj) == ("ap-southeast-1", "platform", "k")
    obj["spec"] = {"region": "cn-shanghai", "credentialsSecretRef": {"name": "mine"}}
    assert classes.account_fields(obj) == ("cn-shanghai", "t", "mine")


def test_what_a_recording_drops_from_its_class_its_task_never_uses():
    """The region of its cloud calls and the time limit come from the effective spec, not the pin as it is."""
    from rtc_recording.decide.actions import Controls

    pin = {
        "name": "gold",
        "defaults": {"region": "ap-southeast-1", "maxDurationSeconds": 600},
        "credentialsSecretRef": {"namespace": "platform", "name": "k"},
    }
    obj = {"metadata": {"namespace": "t"}, "spec": {"mode": "Mixed"}, "status": {"recordingClass": pin}}
    assert (classes.account_fields(obj), Controls.of(obj).max_duration) == (("ap-southeast-1", "platform", "k"), 600)
    obj["spec"]["dropClassDefaults"] = ["region", "maxDurationSeconds"]
    assert (classes.account_fields(obj), Controls.of(obj).max_duration) == ((None, "platform", "k"), None)


def test_pin_patch_nulls_what_the_new_generation_lacks():
    old = {
        "name": "a",
        "generation": 1,
        "defaults": {"storage": {"vod": {}}, "region": "cn-shanghai"},
        "credentialsSecretRef": {"namespace": "p", "name": "k"},
    }
    new = {"name": "a", "generation": 2, "defaults": {"storage": {"oss": OSS["oss"]}}}
    assert classes.pin_patch(old, new) == {
        "name": "a",
        "generation": 2,
        "credentialsSecretRef": None,
        "defaults": {"region": None, "storage": {"vod": None, "oss": OSS["oss"]}},
    }
    assert classes.pin_patch(old, None) is None


# -- a class never breaks a recording ---------------------------------------------------------------
VIDEO_CLASS = klass(
    storage={**OSS, "files": [{"format": "HLS", "fileNamePattern": "{ChannelId}_{StartTime}"}, {"format": "MP4"}]},
    transcode={**TRANSCODE, "videoCodec": "H.265", "videoWidth": 1280, "videoHeight": 720},
    layout={"background": {"url": "https://x/bg.png"}},
    notify={"url": "https://hooks.example.com/class", "fileUploadedFormats": ["HLS", "MP4"]},
)
AUDIO_TRANSCODE = {"audioBitrateKbps": 64, "audioChannels": 2, "audioSampleRateHz": 48000}


def test_an_individual_recording_takes_no_transcode_or_layout_from_its_class():
    spec = classes.validate(own(mode="Individual", layout=None), VIDEO_CLASS.pin())
    assert spec.transcode is None and spec.layout is None
    assert spec.storage.oss.bucket == "class-bucket"  # what applies still does


def test_an_individual_recording_takes_only_names_with_user_id_and_source_type_from_its_class():
    """Without {UserId} every subscriber would write the same files, without {SourceType} a user subscribed twice
    (now, or after an Update) would: the service's own names have what they need."""
    spec = classes.validate(own(mode="Individual", layout=None), VIDEO_CLASS.pin())
    assert [f.file_name_pattern for f in spec.storage.files] == [None, None]
    mixed = classes.validate(own(), VIDEO_CLASS.pin())
    assert mixed.storage.files[0].file_name_pattern == "{ChannelId}_{StartTime}"
    names = {
        "storage": {
            **OSS,
            "files": [
                {"format": "HLS", "fileNamePattern": "{UserId}_{StartTime}"},
                {"format": "MP4", "fileNamePattern": "{UserId}_{SourceType}_{StartTime}"},
            ],
        }
    }
    spec = classes.validate(own(mode="Individual", layout=None), klass(**names).pin())
    assert [f.file_name_pattern for f in spec.storage.files] == [None, "{UserId}_{SourceType}_{StartTime}"]


def test_an_audio_only_recording_takes_no_video_settings_or_layout_from_its_class():
    spec = classes.validate(own(media="Audio", layout=None), VIDEO_CLASS.pin())
    assert spec.transcode.model_dump(by_alias=True, exclude_none=True) == AUDIO_TRANSCODE
    assert spec.layout is None  # a background has no picture to go on
    video = classes.validate(own(), VIDEO_CLASS.pin())
    assert video.transcode.video_codec == "H.265" and video.layout.background.url == "https://x/bg.png"


def test_a_class_callback_format_applies_only_where_it_is_recorded():
    spec = classes.validate(own(storage={"vod": {}}), VIDEO_CLASS.pin())  # VOD: no upload callbacks at all
    assert spec.notify.url == "https://hooks.example.com/class" and spec.notify.file_uploaded_formats is None
    spec = classes.validate(
        own(storage={**OSS, "files": [{"format": "MP3"}]}),
        klass(transcode=TRANSCODE, notify=VIDEO_CLASS.defaults["notify"]).pin(),
    )
    assert spec.notify.file_uploaded_formats == ["HLS"]  # MP4 is not recorded: its callbacks would never come


@pytest.mark.parametrize(
    "resource, check",
    [
        # only storage.files: the class's oss, the files merged by format
        (
            {"storage": {"files": [{"format": "HLS", "pathPrefix": ["team"]}, {"format": "MP3"}]}},
            lambda s: (
                (s.storage.oss.bucket, [(f.format, f.path_prefix) for f in s.storage.files])
                == ("class-bucket", [("HLS", ["team"]), ("MP4", None), ("MP3", None)])
            ),
        ),
        # one transcode field: the class's others
        (
            {"transcode": {"videoGop": 25}},
            lambda s: (s.transcode.video_gop, s.transcode.audio_bitrate_kbps) == (25, 64),
        ),
    ],
    ids=["storage-files", "transcode-field"],
)
def test_partial_overrides_the_merge_rule_documents_are_valid(resource, check):
    RtcRecordingSpec.model_validate(own(**resource))  # as applied
    assert check(classes.validate(own(**resource), VIDEO_CLASS.pin()))  # as started


@pytest.mark.parametrize(
    "resource, expected",
    [
        ({"storage": {**OSS, "vod": {}}}, "spec.storage must set exactly one of oss or vod"),
        (
            {"storage": {"vod": {}, "files": [{"format": "MP4"}]}},
            "spec.storage.files is only valid with spec.storage.oss",
        ),
        # a key signs the callbacks to the recording's own url: the class's url is another party's
        (
            {"notify": {"authKeySecretRef": {"name": "cb", "key": "k"}}},
            "spec.notify.authKeySecretRef is only valid together with spec.notify.url",
        ),
    ],
)
def test_what_no_class_can_mend_is_refused_as_applied(resource, expected):
    with pytest.raises(ValidationError) as refused:
        RtcRecordingSpec.model_validate(own(**resource))
    assert expected in spec_errors(refused.value)


def test_a_recording_drops_class_defaults_it_does_not_want():
    spec = classes.validate(
        own(dropClassDefaults=["layout", "notify", "maxDurationSeconds"]),
        klass(maxDurationSeconds=600, **VIDEO_CLASS.defaults).pin(),
    )
    assert spec.layout.background is None and spec.notify is None and spec.max_duration_seconds is None
    assert spec.transcode.video_bitrate_kbps == 1500  # the rest still applies
    with pytest.raises(InvalidClassSpec, match="spec.storage is required"):
        classes.validate(own(dropClassDefaults=["storage"]), VIDEO_CLASS.pin())
    with pytest.raises(ValidationError):
        RtcRecordingSpec.model_validate(own(dropClassDefaults=["credentialsSecretRef"]))


def class_object(annotation: str | None = None, status: dict | None = None) -> dict:
    meta = {"name": "gold", "uid": "u", "generation": 2, "annotations": {}}
    if annotation is not None:
        meta["annotations"][names.DEFAULT_CLASS_ANNOTATION] = annotation
    return {"metadata": meta, "spec": {"namespaceSelector": {}}, **({"status": status} if status else {})}


def test_class_status_says_default_in_use_and_ready():
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    status = classes.class_status(class_object("true"), True, now)
    assert (status["default"], status["inUse"], status["problems"], status["observedGeneration"]) == (
        True,
        True,
        None,
        2,
    )
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "True", "ClassValid"),
        ("Stalled", "False", "ClassValid"),
    ]
    later = classes.class_status(class_object("true", status), True, now + timedelta(minutes=5))
    assert later == status  # nothing changed: nothing to write


def test_a_default_annotation_other_than_true_or_false_is_a_problem():
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    status = classes.class_status(class_object("True"), False, now)
    assert status["default"] is False and status["problems"] == [
        'annotation rtc.recording.io/is-default-class is "True": only "true" makes a default class'
    ]
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Ready", "False", "InvalidClass"),
        ("Stalled", "True", "InvalidClass"),
    ]
    assert classes.class_status(class_object("false"), False, now)["problems"] is None
