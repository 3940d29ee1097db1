// crmhub's card on HubSpot contact and ticket records: the customer's timeline on every channel, identity
// suggestions to decide and a reply box. Every call goes through hubspot.fetch, which HubSpot signs with the
// app's client secret (X-HubSpot-Signature-v3) and which adds userId/userEmail/portalId: crmhub checks both.
import React, { useCallback, useEffect, useState } from "react";
import {
  Alert, Button, Divider, Flex, Heading, LoadingSpinner, Select, Text, TextArea, hubspot,
} from "@hubspot/ui-extensions";

const CRMHUB = "{{CRMHUB_URL}}/agent/api/v1";

async function call(path, options) {
  const answer = await hubspot.fetch(CRMHUB + path, options || {});
  const data = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(data.detail || "crmhub answered " + answer.status);
  return data;
}

hubspot.extend(({ context }) => <CrmhubCard context={context} />);

function CrmhubCard({ context }) {
  const [person, setPerson] = useState(null);
  const [items, setItems] = useState([]);
  const [suggestions, setSuggestions] = useState([]);
  const [conversation, setConversation] = useState("");
  const [text, setText] = useState("");
  const [said, setSaid] = useState("");
  const [error, setError] = useState("");

  const refresh = useCallback(async (id) => {
    const view = await call("/persons/" + id);
    setPerson(view);
    setConversation((current) => current || (view.conversations[0] || {}).key || "");
    setItems((await call("/persons/" + id + "/timeline?limit=30")).items);
    setSuggestions((await call("/persons/" + id + "/suggestions")).suggestions);
  }, []);

  useEffect(() => {
    call("/records/hubspot/" + encodeURIComponent(context.crm.objectId))
      .then((view) => refresh(view.id)).catch((e) => setError(e.message));
  }, [context.crm.objectId, refresh]);

  const decide = (id, verb) => call("/suggestions/" + id + "/" + verb, { method: "POST" })
    .then((done) => { setSaid(done.result); return refresh(person.id); }).catch((e) => setError(e.message));

  const send = () => {
    const key = "card-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
    call("/persons/" + person.id + "/replies", {
      method: "POST", body: { conversation, text, idempotency_key: key },
    }).then((queued) => {
      setText("");
      setSaid("Reply queued on " + queued.channel + " (" + queued.status + ")");
      return refresh(person.id);
    }).catch((e) => setError(e.message));
  };

  if (error) return <Alert title="crmhub" variant="error">{error}</Alert>;
  if (!person) return <LoadingSpinner label="Loading the customer…" />;
  return (
    <Flex direction="column" gap="sm">
      <Heading>Customer {person.id}</Heading>
      <Text>{person.identities.map((i) => i.kind + " " + (i.display || i.value)).join(" · ")}</Text>
      {suggestions.map((s) => (
        <Flex key={s.id} gap="xs" align="center">
          <Text>{s.sender.kind} {s.sender.display} says they are {s.claimed.kind} {s.claimed.display}</Text>
          <Button onClick={() => decide(s.id, "confirm")}>Same customer</Button>
          <Button variant="secondary" onClick={() => decide(s.id, "reject")}>Not them</Button>
        </Flex>
      ))}
      <Divider />
      <Select label="Conversation" value={conversation} onChange={setConversation}
              options={person.conversations.map((c) => ({ label: c.channel + (c.open ? " (open)" : ""), value: c.key }))} />
      <TextArea label="Reply" name="text" value={text} onChange={setText} maxLength={10000} />
      <Button variant="primary" disabled={!text.trim() || !conversation} onClick={send}>Send</Button>
      {said && <Text>{said}</Text>}
      <Divider />
      {items.map((item) => (
        <Flex key={item.id} direction="column">
          <Text>{item.text}</Text>
          <Text variant="microcopy">
            {item.channel} · {item.direction} · {new Date(item.at).toLocaleString()} · {item.status}
            {item.author ? " · " + item.author : ""}{item.error ? " · " + item.error : ""}
          </Text>
        </Flex>
      ))}
    </Flex>
  );
}
