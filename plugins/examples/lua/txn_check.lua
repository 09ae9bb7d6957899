-- Example Lua transaction check-back handler: decide from a property the producer set
-- on the half message (default "PAID"): "true" commits, "false" rolls back. Otherwise
-- ask the producer as RocketMQ does, and after `patience` checks back off for 5 s
-- between checks instead of asking every round.
--
-- [[plugins.plugin]]
-- name = "paid-check"
-- kind = "txn_check"
-- runtime = "lua"
-- path = "plugins/examples/lua/txn_check.lua"
-- config = { property = "PAID", patience = "3" }

PLUGIN = { name = "paid-check", version = "1.0.0", abi = 1 }

local property, patience = "PAID", 3

function init(config)
  property = config.property or property
  patience = tonumber(config.patience or "3")
end

function check(msg, ctx)
  local v = msg.props[property]
  if v == "true" then return "commit" end
  if v == "false" then return "rollback" end
  if msg.check_count >= patience then return "defer", 5000 end
  return "ask_producer"
end
