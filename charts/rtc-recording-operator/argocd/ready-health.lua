-- Argo CD health check for rtc.recording.io/RtcRecordingSchedule and rtc.recording.io/RtcRecordingClass
-- (argocd-cm keys resource.customizations.health.rtc.recording.io_RtcRecordingSchedule and
-- ..._RtcRecordingClass): their health is their Ready condition, as for kstatus. Uses only what Argo CD
-- opens for a custom script (base and table: no string or os library).
local hs = {}
local status = obj.status

local function condition(kind)
  if status ~= nil and status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == kind then
        return c
      end
    end
  end
  return nil
end

local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to write the Ready condition"
  return hs
end
-- A spec change the operator has not acted on yet: Ready is about the old spec.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. generation
    .. " (status describes generation " .. status.observedGeneration .. ")"
  return hs
end
local text = ready.reason .. ": " .. ready.message
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  -- Waits on a person: an invalid schedule or class.
  hs.status = "Degraded"
elseif ready.status ~= "True" then
  hs.status = "Progressing"
elseif obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
else
  hs.status = "Healthy"
end
hs.message = text
return hs
