-- {name}: a FerroMQ queue selector in Lua. Messages with the same value of the
-- configured property (`key`, default "ORDER_ID") go to the same queue.
PLUGIN = { name = "{name}", version = "0.1.0", abi = 1 }

local key = "ORDER_ID"

function init(config)
  key = config.key or key
end

local function hash(s)
  local h = 0
  for i = 1, #s do h = (h * 31 + string.byte(s, i)) & 0xFFFFFFFF end
  return h
end

-- Returns a 1-based index into queues, or nil to leave the choice to the broker.
function select(msg, queues)
  local v = msg.props[key]
  if v == nil or v == "" then return nil end
  return hash(v) % #queues + 1
end
