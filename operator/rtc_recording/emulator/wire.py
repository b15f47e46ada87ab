"""From query pairs to the API's parameters, and the JSON answers.

The SDK sends every parameter in the query string; object parameters are one compact
JSON value each, and the string array NotifyFileUploadedFormat is flattened into
`NotifyFileUploadedFormat.1`, `.2`, ... (a JSON array in one value is accepted too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from .errors import ApiError

# the code a malformed (non-JSON, non-object) value of each object parameter earns
OBJECT_PARAMS = {
    "SubscribeParams": "InvalidParameter.SubscribeParams.SubscribeUserIdList",
    "RecordParams": "InvalidParameter.RecordParams",
    "StorageParams": "InvalidParameter.StorageParams.StorageType",
    "MixTranscodeParams": "InvalidParameter.MixTranscodeParams",
    "MixLayoutParams": "InvalidParameter.MixLayoutParams.UserPanes",
}
ARRAY_PARAM = "NotifyFileUploadedFormat"
# signature and protocol parameters: not API parameters
COMMON_PARAMS = frozenset(
    {
        "Action",
        "Format",
        "Version",
        "Timestamp",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "AccessKeyId",
        "SecurityToken",
        "RegionId",
        "BearerToken",
    }
)
_INDEXED = re.compile(rf"^{ARRAY_PARAM}\.(\d+)$")


def decode_params(query: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """API parameters by name; object parameters parsed, empty values dropped."""
    params: dict[str, Any] = {}
    indexed: dict[int, str] = {}
    for key, value in query:
        if key in COMMON_PARAMS or value == "" or key in params:
            continue
        if match := _INDEXED.match(key):
            indexed[int(match.group(1))] = value
        elif key in OBJECT_PARAMS:
            params[key] = _json_object(key, value)
        elif key == ARRAY_PARAM:
            params[key] = _json_array(value)
        else:
            params[key] = value
    if indexed:
        params[ARRAY_PARAM] = [indexed[i] for i in sorted(indexed)]
    return params


def _json_object(key: str, value: str) -> dict[str, Any]:
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        raise ApiError(OBJECT_PARAMS[key], f"{key} is not a JSON object")
    return decoded


def _json_array(value: str) -> list[Any]:
    try:
        decoded = json.loads(value)
    except ValueError:
        return [value]  # a single bare format name
    if not isinstance(decoded, list):
        raise ApiError("InvalidParameter.NotifyFileUploadedFormat", f"{ARRAY_PARAM} is not an array")
    return decoded


def error_body(error: ApiError, request_id: str, host_id: str) -> dict[str, str]:
    return {
        "RequestId": request_id,
        "HostId": host_id,
        "Code": error.code,
        "Message": error.message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}&product=live&requestId={request_id}",
    }
