// What the two pages of `transformer-mt serve` (index.html, inside.html) share: served at
// /page.js with them, so both work offline (no CDN).
"use strict";
const $ = (id) => document.getElementById(id);

// POST a JSON body (with the API key field's key, if any); the error's one line on failure.
async function post(path, body) {
  const headers = {"Content-Type": "application/json"};
  if ($("api-key").value) headers.Authorization = `Bearer ${$("api-key").value}`;
  const response = await fetch(path, {method: "POST", headers: headers, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) {
    const wait = response.headers.get("Retry-After");
    throw new Error((data.error || response.statusText) + (wait ? ` (retry in ${wait} s)` : ""));
  }
  return data;
}

// An attention matrix as a table labelled with its tokens (rows: queries, columns: keys),
// each cell's blue scaled to the matrix's maximum, its probability in the tooltip.
function attentionTable(matrix, rowLabels, colLabels) {
  const max = Math.max(...matrix.flat(), 1e-9);
  const table = document.createElement("table");
  table.className = "grid";
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement("th"));
  for (const label of colLabels) {
    const th = document.createElement("th"); th.textContent = label; head.appendChild(th);
  }
  const body = table.createTBody();
  matrix.forEach((row, i) => {
    const tr = body.insertRow();
    const th = document.createElement("th"); th.textContent = rowLabels[i]; tr.appendChild(th);
    row.forEach((value) => {
      const td = tr.insertCell();
      td.style.background = `rgba(30, 80, 200, ${(value / max).toFixed(3)})`;
      td.title = value.toFixed(4);
    });
  });
  return table;
}
