-- Example Lua rebalance strategy, zone aware: a queue is consumed by a client in the
-- same zone when the group has one there (queues of a zone are dealt round robin among
-- that zone's clients); queues of zones without clients are dealt round robin among all
-- clients. Deterministic: every member computes the same partition.
--
-- Zones come from the host (queue.zone, client.zone) or, when empty, from a
-- "zone@name" prefix of the broker name / client id.
--
-- [[plugins.plugin]]
-- name = "zone-aware"
-- kind = "allocation"
-- runtime = "lua"
-- path = "plugins/examples/lua/zone_allocation.lua"

PLUGIN = { name = "zone-aware", version = "1.0.0", abi = 1 }

local function zone(explicit, name)
  if explicit ~= nil and explicit ~= "" then return explicit end
  return string.match(name, "^([^@]+)@") or ""
end

function allocate(ctx)
  local me = ctx.current_index
  if me == nil then return {} end
  local zone_clients = {}
  for i, c in ipairs(ctx.clients) do
    local z = zone(c.zone, c.client_id)
    zone_clients[z] = zone_clients[z] or {}
    table.insert(zone_clients[z], i)
  end
  local my_zone = zone(ctx.clients[me].zone, ctx.clients[me].client_id)
  local peers = zone_clients[my_zone]
  local my_pos = 0
  for p, i in ipairs(peers) do
    if i == me then my_pos = p end
  end
  local mine, local_k, orphan_k = {}, 0, 0
  for qi, q in ipairs(ctx.queues) do
    local z = zone(q.zone, q.broker_name)
    if zone_clients[z] ~= nil then
      if z == my_zone then
        local_k = local_k + 1
        if (local_k - 1) % #peers + 1 == my_pos then table.insert(mine, qi) end
      end
    else
      orphan_k = orphan_k + 1
      if (orphan_k - 1) % #ctx.clients + 1 == me then table.insert(mine, qi) end
    end
  end
  return mine
end
