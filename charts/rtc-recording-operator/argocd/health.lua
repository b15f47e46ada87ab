-- Argo CD health check for rtc.recording.io/RtcRecording (argocd-cm key
-- resource.customizations.health.rtc.recording.io_RtcRecording). Uses only what Argo CD opens for
-- a custom script (base and table: no string or os library).
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick the recording up"
  return hs
end

local function detail(prefix)
  local text = prefix
  if status.reason ~= nil and status.reason ~= "" then
    text = text .. " (" .. status.reason .. ")"
  end
  if status.message ~= nil and status.message ~= "" then
    text = text .. ": " .. status.message
  end
  return text
end

local function condition(kind)
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == kind then
        return c
      end
    end
  end
  return nil
end

-- A spec change the operator has not acted on yet: whatever the phase says is about the old spec.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. generation
    .. " (status describes generation " .. status.observedGeneration .. ")"
  return hs
end

local phase = status.phase
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = detail("Recording failed")
  return hs
end
if phase == "Pending" or phase == "Starting" or phase == "Stopping" or phase == "Recovering" then
  hs.status = "Progressing"
  hs.message = detail(phase)
  return hs
end
-- The operator is still at work on this generation (an Update of a running task, for one).
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.reason .. ": " .. reconciling.message
  return hs
end
if phase == "Recording" then
  local synced = condition("Synced")
  if synced ~= nil and synced.status == "False" then
    -- The task records with its previous settings: the spec in Git is not what runs.
    hs.status = "Degraded"
    hs.message = "Recording, but the last update was refused (" .. synced.reason .. "): " .. synced.message
    return hs
  end
  hs.status = "Healthy"
  hs.message = detail("Recording")
  return hs
end
if phase == "Completed" then
  -- A finished recording is a healthy end state, like a completed Job.
  hs.status = "Healthy"
  hs.message = detail("Recording completed")
  return hs
end
if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = detail("Recording suspended")
  return hs
end
hs.status = "Unknown"
hs.message = "Unknown phase " .. phase
return hs
