// Plays `@hubspot/ui-extensions` outside HubSpot: its components as plain DOM, `hubspot.extend` rendering the card,
// and `hubspot.fetch` going through the host's /hubspot-fetch, which signs and forwards it as HubSpot's proxy does.
import React from "react";
import { createRoot } from "react-dom/client";

export const Flex = ({ children, direction }) => <div className={"flex " + (direction || "row")}>{children}</div>;
export const Text = ({ children, variant }) => <p className={variant || "body"}>{children}</p>;
export const Heading = ({ children }) => <h2>{children}</h2>;
export const Divider = () => <hr />;
export const Alert = ({ title, children }) => <div role="alert"><strong>{title}</strong> {children}</div>;
export const LoadingSpinner = ({ label }) => <p aria-busy="true">{label}</p>;
export const Button = ({ children, onClick, disabled, variant }) => (
  <button type="button" data-variant={variant || "primary"} disabled={disabled} onClick={onClick}>{children}</button>
);
export const Select = ({ label, value, onChange, options }) => (
  <label>{label}
    <select value={value} onChange={(e) => onChange(e.target.value)}>
      {options.map((o) => <option key={o.value} value={o.value}>{o.label}</option>)}
    </select>
  </label>
);
export const TextArea = ({ label, name, value, onChange, maxLength }) => (
  <label>{label}<textarea name={name} value={value} maxLength={maxLength} onChange={(e) => onChange(e.target.value)} /></label>
);

export const hubspot = {
  extend(render) {
    createRoot(document.getElementById("card")).render(render({ context: window.hubspotContext, actions: {} }));
  },
  fetch(url, options = {}) {
    return fetch("/hubspot-fetch", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ url, method: options.method || "GET", body: options.body }),
    });
  },
};
