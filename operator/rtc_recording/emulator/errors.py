"""Vendor error codes, their HTTP statuses and message templates.

Start's codes and statuses are the vendor's StartRtcCloudRecording page's table, word for word; the others are the
common gateway codes of the vendor's API (signature, quota, server faults) and the
task codes of Stop/Update/Describe.
"""

from __future__ import annotations

# code -> (HTTP status, message template; "%s" is the detail of this occurrence)
CATALOG: dict[str, tuple[int, str]] = {
    # Start (seed table)
    "InvalidParameter.NotifyUrl": (400, "%s, please check the notifyUrl."),
    "InvalidParameter.StorageParams.FileInfo": (400, "%s, please check the fileInfo of storageParams."),
    "InvalidParameter.StorageParams.OSSParams": (400, "%s, please check the ossParams of storageParams."),
    "NotFound.OSSBucket": (400, "%s, please check the ossBucket of storageParams."),
    "InvalidParameter.SubscribeParams.SubscribeUserIdList": (
        400,
        "%s, please check the subscribeUserIdList of subscribeParams.",
    ),
    "InvalidParameter.MixLayoutParams.UserPanes": (400, "%s, please check the userPanes of mixLayoutParams."),
    "InvalidParameter.MixTranscodeParams": (400, "%s, please check the transcodeParams."),
    "MissingParameter": (400, "%s."),
    "InvalidParameter.UserId": (403, "%s, please check the UserId."),
    "InvalidParameter.ChannelId": (404, "%s, please check the channelId."),
    "InvalidParameter.AppId": (404, "%s, please check the appId."),
    "InvalidParameter.StorageParams.VodParams": (405, "%s, please check the vodParams of storageParams."),
    "InvalidParameter.NotifyAuthKey": (405, "%s, please check the notifyAuthKey."),
    "InvalidParameter.MaxIdleTime": (405, "%s, please check the maxIdleTime."),
    "InvalidParameter.RecordParams": (405, "%s, please check the recordParams."),
    "InvalidParameter.StorageParams.StorageType": (405, "%s, please check the storageType of storageParams."),
    "InvalidParameter.NotifyFileUploadedFormat": (405, "%s, please check the notifyFileUploadedFormat."),
    # Stop / Update / Describe
    "InvalidParameter.TaskId": (400, "%s, please check the taskId."),
    "NotFound.Task": (400, "%s, the task does not exist."),
    # Gateway: dispatch, signature, credentials
    "RequestTooLarge": (400, "The request is larger than the service accepts. %s"),  # the emulator's own code
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url and method. %s"),
    "InvalidVersion": (400, "Specified parameter Version is not valid. %s"),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards. %s"),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation. %s"),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found. %s"),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already. %s"),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired. %s"),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted. %s"),
    "InvalidSecurityToken.Expired": (400, "Specified SecurityToken is expired. %s"),
    "InvalidSecurityToken.MismatchWithAccessKey": (400, "Specified SecurityToken mismatch with the AccessKey. %s"),
    "InvalidSecurityToken.Malformed": (400, "Specified SecurityToken is malformed. %s"),
    # Quota and server faults
    "Throttling.User": (400, "Request was denied due to user flow control. %s"),
    "InternalError": (500, "The request processing has failed due to some unknown error. %s"),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server. %s"),
}


class ApiError(Exception):
    """A vendor error answer: code, HTTP status and message."""

    def __init__(self, code: str, detail: str = "", *, status: int | None = None):
        known_status, template = CATALOG[code]
        self.code = code
        self.status = status if status is not None else known_status
        self.message = (template % detail).strip()
        super().__init__(f"{code} ({self.status}): {self.message}")
