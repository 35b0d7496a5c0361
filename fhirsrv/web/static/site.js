/* The public directory's only script: the map of the places shown, kept in step with the list,
   and the town suggestions. Everything else works without it. */
(function () {
  "use strict";

  function markersData() {
    var node = document.getElementById("map-data");
    if (!node) { return []; }
    try { return JSON.parse(node.textContent || "[]"); } catch (e) { return []; }
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c];
    });
  }

  function highlight(offerIds, on) {
    offerIds.forEach(function (id) {
      var item = document.querySelector('[data-offer="' + id + '"]');
      if (item) { item.classList.toggle("highlight", on); }
    });
  }

  function drawMap() {
    var box = document.getElementById("map");
    if (!box || typeof L === "undefined") { return; }
    var markers = markersData();
    var map = L.map(box, { scrollWheelZoom: false });
    box.setAttribute("data-ready", "0");
    var tiles = box.getAttribute("data-tiles");
    if (tiles) {
      L.tileLayer(tiles, { attribution: box.getAttribute("data-attribution") || "", maxZoom: 18 }).addTo(map);
    }
    var outlines = box.getAttribute("data-outlines");
    if (outlines) {
      fetch(outlines).then(function (r) { return r.json(); }).then(function (shapes) {
        L.geoJSON(shapes, { style: { color: "#0b4f8a", weight: 1, fillOpacity: 0.04 }, interactive: false }).addTo(map);
      }).catch(function () { /* the markers stand alone */ });
    }
    var bounds = [];
    markers.forEach(function (m) {
      var numbers = m.offers.map(function (o) { return o.n; });
      var label = numbers.length > 3 ? numbers[0] + "–" + numbers[numbers.length - 1] : numbers.join(", ");
      var icon = L.divIcon({ className: "pin", html: '<span class="number">' + escapeHtml(label) + "</span>", iconSize: null });
      var marker = L.marker([m.lat, m.lon], { icon: icon, title: m.title, keyboard: true, alt: m.title }).addTo(map);
      var links = m.offers.map(function (o) {
        return '<li><a href="' + escapeHtml(o.url) + '">' + escapeHtml(o.n + ". " + o.name) + "</a></li>";
      }).join("");
      marker.bindPopup("<strong>" + escapeHtml(m.title) + "</strong><br>" + m.address.map(escapeHtml).join("<br>") + "<ul>" + links + "</ul>");
      var ids = m.offers.map(function (o) { return o.url.split("/").pop(); });
      marker.on("mouseover", function () { highlight(ids, true); });
      marker.on("mouseout", function () { highlight(ids, false); });
      marker.on("click", function () {
        var first = document.getElementById("offer-" + ids[0]);
        if (first) { first.scrollIntoView({ block: "nearest" }); }
      });
      ids.forEach(function (id) {
        var item = document.querySelector('[data-offer="' + id + '"]');
        if (item) {
          item.addEventListener("mouseenter", function () { marker.openPopup(); });
        }
      });
      bounds.push([m.lat, m.lon]);
    });
    if (bounds.length) {
      map.fitBounds(bounds, { padding: [24, 24], maxZoom: 13 });
    } else {
      map.setView([46.6, 2.4], 5);
    }
    box.setAttribute("data-markers", String(markers.length));
    box.setAttribute("data-ready", "1");
  }

  function suggestTowns() {
    var field = document.getElementById("f-commune");
    var list = document.getElementById("communes");
    if (!field || !list) { return; }
    var url = field.getAttribute("data-suggest");
    var pending = null;
    field.addEventListener("input", function () {
      var typed = field.value.trim();
      if (pending) { clearTimeout(pending); }
      if (typed.length < 2) { return; }
      pending = setTimeout(function () {
        fetch(url + "?q=" + encodeURIComponent(typed)).then(function (r) { return r.json(); }).then(function (found) {
          list.innerHTML = "";
          found.forEach(function (c) {
            var option = document.createElement("option");
            option.value = c.label;
            list.appendChild(option);
          });
        }).catch(function () { /* the field still takes a typed town */ });
      }, 150);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawMap();
    suggestTowns();
  });
}());
