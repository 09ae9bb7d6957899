-- Example Lua queue selector: route by a hash of a business key so that every message
-- of one order lands on the same queue (ordered messages). The key is the property named
-- by `key_property` (default ORDER_ID), else the send argument, else the message keys.
-- Edit this file while a producer runs: the registry reloads it within a second.
--
-- [[plugins.plugin]]
-- name = "order-selector"
-- kind = "queue_selector"
-- runtime = "lua"
-- path = "plugins/examples/lua/hash_selector.lua"
-- config = { key_property = "ORDER_ID" }

PLUGIN = { name = "order-hash-selector", version = "1.0.0", abi = 1 }

local key_property = "ORDER_ID"

function init(config)
  key_property = config.key_property or key_property
end

-- Java's String.hashCode over the key's bytes (equal for ASCII keys), as an unsigned
-- 32-bit value.
local function hash(s)
  local h = 0
  for i = 1, #s do
    h = (h * 31 + string.byte(s, i)) & 0xFFFFFFFF
  end
  return h
end

function select(msg, queues)
  local key = msg.props[key_property]
  if key == nil or key == "" then key = msg.arg end
  if key == nil or key == "" then key = msg.keys end
  if key == nil or key == "" then return nil end -- no key: the built-in round robin decides
  return hash(key) % #queues + 1
end
