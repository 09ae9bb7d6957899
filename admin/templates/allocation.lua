-- {name}: a FerroMQ rebalance (allocation) strategy in Lua, loaded by consumers. It
-- deals the queues out in turn.
PLUGIN = { name = "{name}", version = "0.1.0", abi = 1 }

-- Returns the 1-based indices of ctx.queues this consumer (ctx.current_index) takes.
function allocate(ctx)
  local me, n, mine = ctx.current_index, #ctx.clients, {}
  if me == nil then return mine end
  for q = 1, #ctx.queues do
    if (q - 1) % n == me - 1 then table.insert(mine, q) end
  end
  return mine
end
