-- {name}: a FerroMQ transaction check-back handler in Lua. It commits a half message
-- whose configured property (`property`, default "PAID") is "true", rolls back one
-- where it is "false", and otherwise asks the producer.
PLUGIN = { name = "{name}", version = "0.1.0", abi = 1 }

local property = "PAID"

function init(config)
  property = config.property or property
end

-- "commit", "rollback", "ask_producer", or "defer", milliseconds.
function check(msg, ctx)
  local v = msg.props[property]
  if v == "true" then return "commit" end
  if v == "false" then return "rollback" end
  return "ask_producer"
end
