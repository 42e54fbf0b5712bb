// Tree controls: expand, collapse, or open only the investigator's path.
document.querySelectorAll("button[data-action]").forEach(function (button) {
  button.addEventListener("click", function () {
    var action = button.getAttribute("data-action");
    document.querySelectorAll(".tree details").forEach(function (node) {
      if (action === "expand") node.open = true;
      else if (action === "collapse") node.open = false;
      else node.open = node.querySelector(".on-path") !== null;
    });
  });
});
